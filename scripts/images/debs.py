"""Debian packages for the images: dependency closure and download with a private apt (its own
sources, lists, cache and an empty dpkg status, under the image cache), and the contents of
a `.deb` read in memory (nothing is unpacked on disk, no maintainer script runs).

Packages an image must not contain (perl, debconf, ...) are declared "already installed" in
the private status file: apt then neither downloads them nor what only they depend on.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# A version every versioned dependency accepts (the epoch beats any real one).
STAND_IN_VERSION = "999:0"


class DebError(Exception):
    """A package could not be resolved, downloaded or read."""


@dataclass(frozen=True)
class Package:
    """One resolved package: name, version and its downloaded `.deb`."""

    name: str
    version: str
    path: Path


class Apt:
    """apt-get and apt-cache on a private configuration for one Debian suite."""

    def __init__(self, cache: Path, suite: str, max_age_hours: float):
        self.root = cache / "apt" / suite
        self.suite = suite
        self.max_age = max_age_hours * 3600
        self.status = self.root / "state" / "status"
        self.archives = self.root / "cache" / "archives"

    def _options(self, status: Path) -> list[str]:
        etc = self.root / "etc" / "apt"
        return [
            "-o", "Dir=/",
            "-o", f"Dir::Etc={etc}",
            "-o", f"Dir::Etc::sourcelist={etc / 'sources.list'}",
            "-o", f"Dir::Etc::sourceparts={etc / 'sources.list.d'}",
            "-o", f"Dir::Etc::preferencesparts={etc / 'preferences.d'}",
            "-o", f"Dir::Etc::parts={etc / 'apt.conf.d'}",
            "-o", f"Dir::State={self.root / 'state'}",
            "-o", f"Dir::State::status={status}",
            "-o", f"Dir::Cache={self.root / 'cache'}",
            "-o", "APT::Architecture=amd64",
            "-o", "APT::Architectures=amd64",
            "-o", "APT::Install-Recommends=false",
            "-o", "APT::Sandbox::User=root",
            "-o", "Debug::NoLocking=true",
        ]

    def _run(self, tool: str, status: Path, *args: str) -> str:
        cmd = [tool, *self._options(status), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DebError(f"{' '.join([tool, *args])} failed (suite {self.suite}):\n{proc.stderr.strip()}")
        return proc.stdout

    def ensure_lists(self) -> None:
        """Writes the configuration and refreshes the package lists when they are older than
        the maximum age (a second build within it resolves the same versions)."""
        etc = self.root / "etc" / "apt"
        for d in (etc / "sources.list.d", etc / "preferences.d", etc / "apt.conf.d",
                  self.root / "state" / "lists" / "partial", self.archives / "partial"):
            d.mkdir(parents=True, exist_ok=True)
        sources = (
            f"deb [signed-by={KEYRING}] {DEBIAN_MIRROR} {self.suite} main\n"
            f"deb [signed-by={KEYRING}] {DEBIAN_MIRROR} {self.suite}-updates main\n"
            f"deb [signed-by={KEYRING}] {DEBIAN_SECURITY_MIRROR} {self.suite}-security main\n"
        )
        sources_file = etc / "sources.list"
        changed = not sources_file.exists() or sources_file.read_text() != sources
        sources_file.write_text(sources)
        self.status.touch()
        stamp = self.root / "state" / "updated"
        fresh = stamp.exists() and time.time() - stamp.stat().st_mtime < self.max_age
        if fresh and not changed:
            return
        self._run("apt-get", self.status, "-q", "update")
        stamp.touch()

    def resolve(self, packages: list[str], excluded: list[str]) -> list[Package]:
        """The dependency closure of `packages` without `excluded` (and what only they need),
        downloaded into the private cache, sorted by name."""
        status = self.root / "state" / "status-resolve"
        status.write_text("".join(_stand_in_entry(name) for name in sorted(set(excluded))))
        plan = self._run("apt-get", status, "-q", "-s", "install", *packages)
        resolved = []
        for line in plan.splitlines():
            # Inst libc6 (2.41-12 Debian:13.1/stable [amd64])
            if not line.startswith("Inst "):
                continue
            parts = line.split()
            resolved.append((parts[1], parts[2].lstrip("(")))
        if not resolved:
            raise DebError(f"apt resolved nothing for {packages} (suite {self.suite})")
        self._run("apt-get", status, "-q", "-y", "--download-only", "install", *packages)
        out = []
        for name, version in sorted(resolved):
            deb = self.archives / f"{name}_{version.replace(':', '%3a')}_amd64.deb"
            if not deb.exists():
                deb = self.archives / f"{name}_{version.replace(':', '%3a')}_all.deb"
            if not deb.exists():
                raise DebError(f"apt did not download {name} {version} into {self.archives}")
            out.append(Package(name, version, deb))
        return out


def _stand_in_entry(name: str) -> str:
    return (
        f"Package: {name}\nStatus: install ok installed\nPriority: optional\nSection: misc\n"
        f"Maintainer: AuthStack image builder\nArchitecture: amd64\nMulti-Arch: allowed\n"
        f"Version: {STAND_IN_VERSION}\nDescription: left out of the image\n\n"
    )


def _ar_members(path: Path) -> dict[str, bytes]:
    data = path.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise DebError(f"{path} is not a Debian package (no ar header)")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def _member_tar(path: Path, members: dict[str, bytes], prefix: str) -> tarfile.TarFile:
    for name, blob in members.items():
        if name.startswith(prefix):
            if name.endswith(".zst"):
                raise DebError(f"{path}: {name} is zstd-compressed, which this builder does not read")
            return tarfile.open(fileobj=io.BytesIO(blob), mode="r:*")
    raise DebError(f"{path} has no {prefix}* member")


def control(pkg: Package) -> str:
    """The package's `control` file (what dpkg records in its status database)."""
    members = _ar_members(pkg.path)
    with _member_tar(pkg.path, members, "control.tar") as tar:
        for member in tar.getmembers():
            if member.name in ("./control", "control"):
                f = tar.extractfile(member)
                if f is not None:
                    return f.read().decode()
    raise DebError(f"{pkg.path} has no control file")


def data(pkg: Package) -> tarfile.TarFile:
    """The package's file system tree (`data.tar.*`), opened in memory."""
    return _member_tar(pkg.path, _ar_members(pkg.path), "data.tar")
