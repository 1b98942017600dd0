#!/usr/bin/env python3
"""Writes AuthStack's images as OCI archives without a registry or a container engine:
`<out>/<name>.oci.tar` for the Dockerfile's service targets (auth-svc, gateway, chat,
operator) and for the PostgreSQL and RabbitMQ stand-ins, as described in images.toml.

Reproducible: the same release binaries and the same Debian packages give the same digests
(sorted tar entries, mtimes clamped to SOURCE_DATE_EPOCH, canonical JSON, gzip without a
timestamp). Run by `make images` (scripts/build-images.sh), which builds the binaries first.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import debs
import dockerfile
import oci
from rootfs import Rootfs, RootfsError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def release_dir(configured: str) -> Path:
    """Where cargo put the release binaries: `$CARGO_TARGET_DIR/release` when that is set (as
    cargo does), else `configured` (images.toml's `release_dir`) under the repository."""
    target = os.environ.get("CARGO_TARGET_DIR")
    return Path(target) / "release" if target else REPO / configured
NSSWITCH = (
    "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
    "protocols: files\nservices: files\nethers: files\nrpc: files\n"
)


@dataclass
class Built:
    """An image written to disk."""

    name: str
    image: oci.Image
    path: Path


def user_files(tree: Rootfs, spec: dict, epoch: int) -> None:
    """/etc/passwd, /etc/group and /etc/nsswitch.conf from the spec's users and groups."""
    passwd = "".join(
        f"{u['name']}:x:{u['uid']}:{u['uid']}:{u['name']}:{u['home']}:{u['shell']}\n"
        for u in spec["users"]
    )
    groups = [(u["name"], u["uid"]) for u in spec["users"]]
    groups += [(g["name"], g["gid"]) for g in spec.get("groups", [])]
    group = "".join(f"{name}:x:{gid}:\n" for name, gid in sorted(groups, key=lambda g: g[1]))
    tree.file("etc/passwd", passwd.encode(), mtime=epoch)
    tree.file("etc/group", group.encode(), mtime=epoch)
    tree.file("etc/nsswitch.conf", NSSWITCH.encode(), mtime=epoch)


def base_tree(spec: dict, apt: debs.Apt, epoch: int) -> tuple[Rootfs, list[debs.Package]]:
    """The packages of a spec (with what dpkg would record about them), its users and its
    directories; fails when an ELF file lacks a shared library."""
    packages = apt.resolve(spec["packages"], spec.get("exclude", []))
    tree = Rootfs()
    tree.merged_usr(epoch)
    for pkg in packages:
        tree.add_package(pkg, spec.get("drop", []))
        # Like distroless: one control file per package, for scanners that read dpkg's data.
        tree.file(f"var/lib/dpkg/status.d/{pkg.name}", debs.control(pkg).encode(), mtime=epoch)
    user_files(tree, spec, epoch)
    for d in spec.get("dirs", []):
        tree.directory(d["path"], d.get("mode", 0o755), d.get("uid", 0), d.get("uid", 0), epoch)
    if spec.get("ca_bundle"):
        certs = sorted(
            p for p, e in tree.entries.items()
            if fnmatch.fnmatchcase(p, "usr/share/ca-certificates/*/*.crt")
        )
        if not certs:
            raise RootfsError("ca_bundle is set but no certificates are in the image")
        bundle = b"".join(tree.entries[p].data.rstrip(b"\n") + b"\n" for p in certs)
        tree.file("etc/ssl/certs/ca-certificates.crt", bundle, mtime=epoch)
    tree.check_libraries(spec.get("allow_missing_libraries", []))
    return tree, packages


def describe(packages: list[debs.Package], suite: str) -> str:
    """The history line of a package layer."""
    return f"Debian {suite}: " + " ".join(f"{p.name}={p.version}" for p in packages)


def write(name: str, reference: str, config: oci.ImageConfig, layers: list[oci.Layer],
          out: Path, epoch: int) -> Built:
    img = oci.image(reference, config, layers, epoch)
    path = out / f"{name}.oci.tar"
    oci.write_archive(img, path, epoch)
    return Built(name, img, path)


def merge_env(base: list[str], override: dict[str, str]) -> list[str]:
    """Docker's ENV semantics: a key set again replaces the base's value in place."""
    env = dict(e.split("=", 1) for e in base)
    env.update(override)
    return [f"{k}={v}" for k, v in env.items()]


def service_images(cfg: dict, args: argparse.Namespace, cache: Path, epoch: int) -> list[Built]:
    """The Dockerfile's targets on the rebuilt runtime base (one shared base layer)."""
    df = cfg["dockerfile"]
    stages = dockerfile.targets(REPO / df["path"], {"VERSION": args.tag})
    wanted = [t for t in df["targets"] if not args.only or t in args.only]
    if not wanted:
        return []
    base_specs = {b["stands_in_for"]: (name, b) for name, b in cfg["bases"].items()}
    built = []
    base_layer: dict[str, oci.Layer] = {}
    for target_name in wanted:
        target = stages.get(target_name)
        if target is None:
            raise SystemExit(f"the Dockerfile has no stage {target_name!r}")
        if target.base not in base_specs:
            raise SystemExit(
                f"Dockerfile target {target_name} starts from {target.base}, which images.toml "
                f"does not rebuild (known: {', '.join(base_specs)})"
            )
        base_name, base = base_specs[target.base]
        if base_name not in base_layer:
            apt = debs.Apt(cache, base["suite"], args.apt_max_age_hours)
            apt.ensure_lists()
            tree, packages = base_tree(base, apt, epoch)
            base_layer[base_name] = oci.layer(tree, epoch, describe(packages, base["suite"]))
        app = Rootfs()
        for copy in target.copies:
            if copy.stage != df["build_stage"] or not copy.source.startswith(df["build_output"] + "/"):
                raise SystemExit(f"{target_name}: COPY --from={copy.stage} {copy.source} is not a build output")
            binary = release_dir(df["release_dir"]) / copy.source.removeprefix(df["build_output"] + "/")
            if not binary.is_file():
                raise SystemExit(f"{binary} is missing: build the release binaries first (make images does)")
            app.file(copy.dest, binary.read_bytes(), copy.mode, copy.uid, copy.gid, epoch)
        app_layer = oci.layer(app, epoch, "COPY " + " ".join("/" + c.dest.lstrip("/") for c in target.copies))
        config = oci.ImageConfig(
            user=target.user or base["user"],
            entrypoint=target.entrypoint,
            env=merge_env(base["env"], target.env),
            working_dir=base["working_dir"],
            exposed_ports=target.exposed_ports,
            labels=target.labels,
        )
        reference = f"{args.registry}/{target_name}:{args.tag}"
        built.append(write(target_name, reference, config, [base_layer[base_name], app_layer],
                           args.out, epoch))
    return built


def backing_images(cfg: dict, args: argparse.Namespace, cache: Path, epoch: int) -> list[Built]:
    """The PostgreSQL and RabbitMQ stand-ins."""
    built = []
    for name, spec in cfg["images"].items():
        if args.only and name not in args.only:
            continue
        apt = debs.Apt(cache, spec["suite"], args.apt_max_age_hours)
        apt.ensure_lists()
        tree, packages = base_tree(spec, apt, epoch)
        own = Rootfs()
        for f in spec.get("files", []):
            own.file(f["dest"], (HERE / f["src"]).read_bytes(), f["mode"], mtime=epoch)
        layers = [
            oci.layer(tree, epoch, describe(packages, spec["suite"])),
            oci.layer(own, epoch, "COPY " + " ".join("/" + f["dest"] for f in spec.get("files", []))),
        ]
        config = oci.ImageConfig(
            user=spec["user"],
            entrypoint=spec["entrypoint"],
            cmd=spec.get("cmd", []),
            env=spec["env"],
            exposed_ports=spec.get("exposed_ports", []),
            volumes=spec.get("volumes", []),
            labels=spec.get("labels", {}),
            stop_signal=spec.get("stop_signal", ""),
        )
        reference = f"{args.registry}/{name}:{spec['tag']}"
        built.append(write(name, reference, config, layers, args.out, epoch))
    return built


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="directory for <name>.oci.tar")
    p.add_argument("--registry", required=True, help="image name prefix, e.g. ghcr.io/authstack")
    p.add_argument("--tag", required=True, help="tag of the service images (the workspace version)")
    p.add_argument("--cache", type=Path, required=True, help="apt state and downloaded packages")
    p.add_argument("--only", nargs="*", default=[], help="build only these images (names)")
    p.add_argument("--apt-max-age-hours", type=float, default=24.0,
                   help="refresh Debian's package lists when older (default 24)")
    args = p.parse_args()
    epoch_env = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not epoch_env.isdigit():
        p.error("SOURCE_DATE_EPOCH must be set to the image timestamp (seconds since 1970)")
    epoch = int(epoch_env)
    cfg = tomllib.loads((HERE / "images.toml").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        built = service_images(cfg, args, args.cache, epoch) + backing_images(cfg, args, args.cache, epoch)
    except (debs.DebError, RootfsError, dockerfile.DockerfileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for b in built:
        layers = sum(l.blob.descriptor()["size"] for l in b.image.layers)
        print(f"{b.path.name:24} {b.image.reference:40} {b.image.manifest.digest}  "
              f"{layers / 1e6:6.1f} MB compressed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
