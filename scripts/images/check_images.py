#!/usr/bin/env python3
"""Checks the OCI archives of `make images` against the two descriptions they must agree with,
reading what is really in each archive (config and merged layers):

  - the Dockerfile, for auth-svc, gateway, chat and operator: the same user, entrypoint (the
    file exists, owner and mode of its COPY, the bytes of the release binary), environment,
    labels and exposed ports, on the same base layout as distroless (non-root user 65532 with
    its home, /tmp 1777, the CA bundle SSL_CERT_FILE names, no shell);
  - the operator's pod specs (as `authstack-render` prints them), for every workload image:
    the image's user is the pod's runAsUser/runAsGroup, every container port is exposed, every
    probe's and hook's program is on the image's PATH, and the paths the pod mounts exist;
and that building again gives byte-identical archives (--rebuild).

  check_images.py --images DIR --rendered FILE [--rebuild --cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import posixpath
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

import dockerfile
from build import release_dir

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NONROOT = 65532


class Mismatch(Exception):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise Mismatch(what)
    print(f"ok: {what}")


@dataclass
class File:
    info: tarfile.TarInfo
    data: bytes


@dataclass
class Archive:
    reference: str
    config: dict
    files: dict[str, File]  # merged layers, paths without a leading slash

    def read(self, path: str) -> bytes:
        return self.files[self.resolve(path)].data

    def resolve(self, path: str, depth: int = 0) -> str:
        """The path with every symlink component followed ('' if it does not exist)."""
        parts, current = path.strip("/").split("/"), ""
        for i, part in enumerate(parts):
            current = posixpath.join(current, part) if current else part
            f = self.files.get(current)
            if f is None or depth > 40:
                return ""
            if f.info.issym():
                target = f.info.linkname
                base = "/" if target.startswith("/") else "/" + posixpath.dirname(current)
                rest = "/".join(parts[i + 1:])
                return self.resolve(posixpath.normpath(posixpath.join(base, target, rest)), depth + 1)
        return current

    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config["config"].get("Env", []))

    def which(self, program: str) -> str:
        if "/" in program:
            return self.resolve(program)
        for d in self.env().get("PATH", "").split(":"):
            found = self.resolve(posixpath.join(d, program))
            if found and self.files[found].info.mode & 0o111:
                return found
        return ""


def open_archive(path: Path) -> Archive:
    with tarfile.open(path) as outer:
        def blob(digest: str) -> bytes:
            return outer.extractfile(f"blobs/sha256/{digest.split(':')[1]}").read()

        index = json.loads(outer.extractfile("index.json").read())
        desc = index["manifests"][0]
        manifest = json.loads(blob(desc["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        files: dict[str, File] = {}
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"])), mode="r:gz") as tar:
                for m in tar.getmembers():
                    name = m.name.rstrip("/")
                    if posixpath.basename(name).startswith(".wh."):
                        raise Mismatch(f"{path.name}: whiteouts are not expected ({name})")
                    f = tar.extractfile(m) if m.isreg() else None
                    files[name] = File(m, f.read() if f else b"")
    return Archive(desc["annotations"]["io.containerd.image.name"], config, files)


def users(a: Archive) -> dict[int, tuple[str, str]]:
    out = {}
    for line in a.read("etc/passwd").decode().splitlines():
        name, _, uid, _gid, _, home, _shell = line.split(":")
        out[int(uid)] = (name, home)
    return out


def check_dockerfile_targets(images: Path) -> None:
    cfg = tomllib.loads((HERE / "images.toml").read_text())
    df = cfg["dockerfile"]
    stages = dockerfile.targets(REPO / df["path"], {"VERSION": "0.1.0"})
    for name in df["targets"]:
        target, a = stages[name], open_archive(images / f"{name}.oci.tar")
        c = a.config["config"]
        check(c["User"] == target.user, f"{name}: user {c['User']} is the Dockerfile's USER")
        check(c["Entrypoint"] == target.entrypoint, f"{name}: entrypoint {c['Entrypoint']}")
        env = a.env()
        check(all(env.get(k) == v for k, v in target.env.items()), f"{name}: the Dockerfile's ENV {target.env}")
        check(all(c.get("Labels", {}).get(k) == v for k, v in target.labels.items()), f"{name}: the Dockerfile's labels")
        check(sorted(c.get("ExposedPorts", {})) == sorted(target.exposed_ports), f"{name}: EXPOSE {target.exposed_ports}")
        for copy in target.copies:
            path = a.resolve(copy.dest)
            check(bool(path), f"{name}: {copy.dest} is in the image")
            f = a.files[path]
            check((f.info.uid, f.info.gid, f.info.mode & 0o7777) == (copy.uid, copy.gid, copy.mode),
                  f"{name}: {copy.dest} owned {copy.uid}:{copy.gid} mode {copy.mode:o} as COPY says")
            binary = release_dir(df["release_dir"]) / posixpath.basename(copy.source)
            check(hashlib.sha256(f.data).digest() == hashlib.sha256(binary.read_bytes()).digest(),
                  f"{name}: {copy.dest} is target/release/{binary.name}")
        check(a.which(target.entrypoint[0]) != "", f"{name}: the entrypoint resolves")
        # distroless's layout
        uid = int(c["User"].split(":")[0])
        check(users(a).get(uid) == ("nonroot", "/home/nonroot") and uid == NONROOT,
              f"{name}: uid {uid} is distroless's nonroot with home /home/nonroot")
        home = a.files[a.resolve("home/nonroot")].info
        check((home.uid, home.mode & 0o7777) == (NONROOT, 0o700), f"{name}: /home/nonroot is 65532's, 0700")
        check(c.get("WorkingDir") == "/home/nonroot", f"{name}: working directory /home/nonroot")
        check(a.files[a.resolve("tmp")].info.mode & 0o7777 == 0o1777, f"{name}: /tmp is 1777")
        bundle = a.read(env["SSL_CERT_FILE"].lstrip("/"))
        check(bundle.count(b"BEGIN CERTIFICATE") > 100, f"{name}: SSL_CERT_FILE holds the CA bundle")
        check(not any(a.which(sh) for sh in ("sh", "bash", "dash")), f"{name}: no shell, like distroless")


def check_pod_specs(images: Path, rendered: Path) -> None:
    objects = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    archives = {}
    for p in images.glob("*.oci.tar"):
        a = open_archive(p)
        archives[a.reference] = a
    for w in (o for o in objects if o["kind"] in ("StatefulSet", "Deployment")):
        pod = w["spec"]["template"]["spec"]
        for c in pod["containers"]:
            what = f"{w['metadata']['name']}/{c['name']}"
            a = archives.get(c["image"])
            check(a is not None, f"{what}: {c['image']} is one of the archives")
            sec = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
            check(a.config["config"]["User"] == f"{sec['runAsUser']}:{sec['runAsGroup']}",
                  f"{what}: the image's user is the pod's runAsUser:runAsGroup {sec['runAsUser']}:{sec['runAsGroup']}")
            exposed = a.config["config"].get("ExposedPorts", {})
            for port in c.get("ports", []):
                check(f"{port['containerPort']}/{port.get('protocol', 'TCP').lower()}" in exposed,
                      f"{what}: port {port['containerPort']} is exposed by the image")
            execs = [(k, (c.get(k) or {}).get("exec")) for k in ("readinessProbe", "livenessProbe", "startupProbe")]
            execs += [(f"lifecycle.{k}", ((c.get("lifecycle") or {}).get(k) or {}).get("exec"))
                      for k in ("postStart", "preStop")]
            for kind, ex in execs:
                if ex:
                    check(a.which(ex["command"][0]) != "", f"{what}: {kind} runs {ex['command'][0]}, on the image's PATH")
            if c.get("command"):
                check(a.which(c["command"][0]) != "", f"{what}: command {c['command'][0]} is in the image")
            for m in c.get("volumeMounts", []):
                check(a.resolve(m["mountPath"]) != "", f"{what}: mount point {m['mountPath']} exists in the image")


def check_reproducible(images: Path, cache: Path) -> None:
    with tempfile.TemporaryDirectory(dir=images.parent) as tmp:
        archives = sorted(images.glob("*.oci.tar"))
        names = [p.name.removesuffix(".oci.tar") for p in archives if p.name != "pause.oci.tar"]
        subprocess.run([sys.executable, str(HERE / "build.py"), "--out", tmp, "--registry", "ghcr.io/authstack",
                        "--tag", "0.1.0", "--cache", str(cache), "--only", *names], check=True,
                       stdout=subprocess.DEVNULL)
        for name in names:
            a = hashlib.sha256((images / f"{name}.oci.tar").read_bytes()).hexdigest()
            b = hashlib.sha256((Path(tmp) / f"{name}.oci.tar").read_bytes()).hexdigest()
            check(a == b, f"{name}: a second build is byte-identical (sha256 {a[:16]}…)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--rendered", type=Path, required=True, help="authstack-render output, with the archives' images")
    p.add_argument("--rebuild", action="store_true", help="also build again and compare bytes")
    p.add_argument("--cache", type=Path, help="the image builder's cache (with --rebuild)")
    args = p.parse_args()
    try:
        check_dockerfile_targets(args.images)
        check_pod_specs(args.images, args.rendered)
        if args.rebuild:
            check_reproducible(args.images, args.cache)
    except Mismatch as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
