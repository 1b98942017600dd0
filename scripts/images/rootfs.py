"""A root file system held in memory: files of Debian packages and of the image itself, with
Debian's merged /usr layout, and checks that every ELF file finds its shared libraries."""

from __future__ import annotations

import fnmatch
import io
import posixpath
import tarfile
from dataclasses import dataclass, field

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

import debs

# Debian's merged /usr: these top-level directories are symlinks into /usr.
MERGED_DIRS = ("bin", "sbin", "lib", "lib64")
# glibc's search path on amd64 when there is no /etc/ld.so.cache.
LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib", "usr/lib64")
# Never worth shipping in a container image (copyright files stay).
ALWAYS_DROPPED = (
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/lintian/*",
    "usr/share/locale/*",
    "usr/share/bug/*",
    "usr/share/doc-base/*",
    "usr/share/bash-completion/*",
    "usr/share/zsh/*",
    "usr/share/fish/*",
)
ALWAYS_KEPT = ("usr/share/doc/*/copyright",)


class RootfsError(Exception):
    """The tree is inconsistent (a missing library, a conflicting entry)."""


@dataclass
class Entry:
    """One file system entry: a regular file, directory or symlink."""

    kind: bytes  # tarfile.REGTYPE, DIRTYPE or SYMTYPE
    mode: int
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    data: bytes = b""
    target: str = ""  # symlink target


@dataclass
class Rootfs:
    """Paths (relative, no leading slash) to entries."""

    entries: dict[str, Entry] = field(default_factory=dict)

    def add(self, path: str, entry: Entry) -> None:
        """Adds an entry and its missing parent directories (0755, root)."""
        path = clean(path)
        parent = posixpath.dirname(path)
        if parent and parent not in self.entries:
            self.add(parent, Entry(tarfile.DIRTYPE, 0o755, mtime=entry.mtime))
        old = self.entries.get(path)
        if old is not None and old.kind == tarfile.DIRTYPE and entry.kind == tarfile.DIRTYPE:
            return  # directories shared between packages: the first one's metadata stays
        self.entries[path] = entry

    def file(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0,
             mtime: int = 0) -> None:
        """Adds a regular file."""
        self.add(path, Entry(tarfile.REGTYPE, mode, uid, gid, mtime, data=data))

    def directory(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0,
                  mtime: int = 0) -> None:
        """Adds a directory, or sets the owner and mode of an existing one."""
        path = clean(path)
        self.add(path, Entry(tarfile.DIRTYPE, mode, uid, gid, mtime))
        self.entries[path] = Entry(tarfile.DIRTYPE, mode, uid, gid, mtime)

    def symlink(self, path: str, target: str, mtime: int = 0) -> None:
        """Adds a symbolic link."""
        self.add(path, Entry(tarfile.SYMTYPE, 0o777, mtime=mtime, target=target))

    def merged_usr(self, mtime: int) -> None:
        """The /bin, /sbin, /lib, /lib64 -> usr/... symlinks of a merged-/usr Debian."""
        for d in MERGED_DIRS:
            self.directory(f"usr/{d}", mtime=mtime)
            self.symlink(d, f"usr/{d}", mtime=mtime)

    def add_package(self, pkg: debs.Package, drop: list[str]) -> None:
        """Adds a package's files (hard links become copies; `drop` globs are left out)."""
        with debs.data(pkg) as tar:
            for member in tar:
                path = package_path(member.name)
                if not path or dropped(path, drop):
                    continue
                meta = dict(mode=member.mode, uid=member.uid, gid=member.gid, mtime=int(member.mtime))
                if member.isdir():
                    self.add(path, Entry(tarfile.DIRTYPE, **meta))
                elif member.issym():
                    self.add(path, Entry(tarfile.SYMTYPE, target=member.linkname, **meta))
                elif member.islnk():
                    source = self.entries.get(package_path(member.linkname))
                    if source is None or source.kind != tarfile.REGTYPE:
                        raise RootfsError(f"{pkg.name}: hard link {path} -> {member.linkname} has no file")
                    self.add(path, Entry(tarfile.REGTYPE, data=source.data, **meta))
                elif member.isreg():
                    f = tar.extractfile(member)
                    self.add(path, Entry(tarfile.REGTYPE, data=f.read() if f else b"", **meta))
                else:
                    raise RootfsError(f"{pkg.name}: {path} is neither file, directory nor symlink")

    def resolve(self, path: str, depth: int = 0) -> str | None:
        """The path after following symlinks (in every component), or None if it is missing."""
        if depth > 40:
            return None
        parts = clean(path).split("/")
        current = ""
        for i, part in enumerate(parts):
            current = posixpath.join(current, part) if current else part
            entry = self.entries.get(current)
            if entry is None:
                return None
            if entry.kind == tarfile.SYMTYPE:
                base = posixpath.dirname(current)
                target = entry.target if entry.target.startswith("/") else posixpath.join("/", base, entry.target)
                rest = "/".join(parts[i + 1:])
                return self.resolve(posixpath.join(target, rest) if rest else target, depth + 1)
        return current

    def check_libraries(self, allowed_missing: list[str]) -> None:
        """Fails when an ELF file's interpreter or a `DT_NEEDED` library is not in the tree
        (library dirs, `DT_RUNPATH`/`DT_RPATH` with `$ORIGIN`). `allowed_missing` globs name
        ELF files whose missing libraries are accepted (optional plugins)."""
        problems = []
        for path, entry in sorted(self.entries.items()):
            if entry.kind != tarfile.REGTYPE or not entry.data.startswith(b"\x7fELF"):
                continue
            if any(fnmatch.fnmatchcase(path, g) for g in allowed_missing):
                continue
            try:
                elf = ELFFile(io.BytesIO(entry.data))
                interp, needed, runpath = _dynamic_info(elf)
            except ELFError as e:
                raise RootfsError(f"{path}: unreadable ELF file: {e}") from e
            if interp and self.resolve(interp) is None:
                problems.append(f"/{path}: interpreter {interp} missing")
            origin = "/" + posixpath.dirname(path)
            dirs = [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin) for d in runpath]
            dirs += ["/" + d for d in LIBRARY_DIRS]
            for lib in needed:
                if not any(self.resolve(posixpath.join(d, lib)) for d in dirs):
                    problems.append(f"/{path}: needs {lib}, which is not in the image")
        if problems:
            raise RootfsError("missing shared libraries:\n  " + "\n  ".join(problems))


def _dynamic_info(elf: ELFFile) -> tuple[str | None, list[str], list[str]]:
    interp = None
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_INTERP":
            interp = seg.get_interp_name()
    needed, runpath = [], []
    for section in elf.iter_sections():
        if not isinstance(section, DynamicSection):
            continue
        for tag in section.iter_tags():
            if tag.entry.d_tag == "DT_NEEDED":
                needed.append(tag.needed)
            elif tag.entry.d_tag == "DT_RUNPATH":
                runpath += tag.runpath.split(":")
            elif tag.entry.d_tag == "DT_RPATH":
                runpath += tag.rpath.split(":")
    return interp, needed, runpath


def clean(name: str) -> str:
    """`/./a//b/` -> `a/b`: relative, normalized, no trailing slash."""
    path = posixpath.normpath("/" + name).lstrip("/")
    return "" if path == "." else path


def package_path(name: str) -> str:
    """Where a package's path lands with merged /usr: `./lib/x` -> `usr/lib/x`; the merged
    directories themselves (`./lib`) are the image's symlinks, so they map to nothing."""
    path = clean(name)
    head, _, rest = path.partition("/")
    if head in MERGED_DIRS:
        return f"usr/{head}/{rest}" if rest else ""
    return path


def dropped(path: str, drop: list[str]) -> bool:
    """Whether a package path is left out of the image."""
    if any(fnmatch.fnmatchcase(path, g) for g in ALWAYS_KEPT):
        return False
    return any(fnmatch.fnmatchcase(path, g) for g in (*ALWAYS_DROPPED, *drop))
