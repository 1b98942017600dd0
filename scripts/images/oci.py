"""OCI image layout written directly and reproducibly: layers are tar archives with sorted
entries, numeric owners and clamped mtimes, gzip without a timestamp; JSON is canonical
(sorted keys, no spaces). The same inputs give the same digests, byte for byte.

An archive is a tar of the layout (`oci-layout`, `index.json`, `blobs/sha256/...`), the input
of `ctr images import` (the image name is in the `io.containerd.image.name` annotation).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rootfs import Entry, Rootfs

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
GZIP_LEVEL = 9


def canonical_json(value: object) -> bytes:
    """JSON with sorted keys and no insignificant whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> str:
    """`sha256:<hex>` of the bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """A content-addressed blob and its descriptor fields."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256(self.data)

    def descriptor(self, annotations: dict[str, str] | None = None) -> dict:
        d = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}
        if annotations:
            d["annotations"] = annotations
        return d


@dataclass(frozen=True)
class Layer:
    """A gzip layer and the digest of its uncompressed tar (the config's diff_id)."""

    blob: Blob
    diff_id: str
    comment: str


def _tar_info(path: str, entry: Entry, epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path + ("/" if entry.kind == tarfile.DIRTYPE else ""))
    info.type = entry.kind
    info.mode = entry.mode & 0o7777
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mtime = min(entry.mtime, epoch) if entry.mtime else epoch
    if entry.kind == tarfile.SYMTYPE:
        info.linkname = entry.target
    elif entry.kind == tarfile.REGTYPE:
        info.size = len(entry.data)
    return info


def layer(tree: Rootfs, epoch: int, comment: str) -> Layer:
    """A layer with every entry of the tree, sorted by path (parents first)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(tree.entries):
            entry = tree.entries[path]
            info = _tar_info(path, entry, epoch)
            tar.addfile(info, io.BytesIO(entry.data) if entry.kind == tarfile.REGTYPE else None)
    uncompressed = raw.getvalue()
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as gz:
        gz.write(uncompressed)
    return Layer(Blob(MEDIA_LAYER, compressed.getvalue()), sha256(uncompressed), comment)


@dataclass
class ImageConfig:
    """The runtime part of an OCI image config."""

    user: str
    entrypoint: list[str]
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    exposed_ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""

    def to_json(self) -> dict:
        c: dict = {"User": self.user, "Entrypoint": self.entrypoint, "Env": self.env}
        if self.cmd:
            c["Cmd"] = self.cmd
        if self.working_dir:
            c["WorkingDir"] = self.working_dir
        if self.exposed_ports:
            c["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.volumes:
            c["Volumes"] = {v: {} for v in self.volumes}
        if self.labels:
            c["Labels"] = self.labels
        if self.stop_signal:
            c["StopSignal"] = self.stop_signal
        return c


def rfc3339(epoch: int) -> str:
    """The epoch as an RFC 3339 UTC time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True)
class Image:
    """A finished image: its blobs and the manifest that names them."""

    reference: str  # registry/name:tag
    manifest: Blob
    config: Blob
    layers: list[Layer]

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1]


def image(reference: str, config: ImageConfig, layers: list[Layer], epoch: int) -> Image:
    """Assembles the config and manifest of an image from its layers."""
    created = rfc3339(epoch)
    config_blob = Blob(MEDIA_CONFIG, canonical_json({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": config.to_json(),
        "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]},
        "history": [{"created": created, "created_by": l.comment} for l in layers],
    }))
    manifest = Blob(MEDIA_MANIFEST, canonical_json({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [l.blob.descriptor() for l in layers],
        "annotations": {"org.opencontainers.image.created": created},
    }))
    return Image(reference, manifest, config_blob, layers)


def write_archive(img: Image, out: Path, epoch: int) -> None:
    """Writes the image as an OCI layout tar (atomically)."""
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            **img.manifest.descriptor({
                "io.containerd.image.name": img.reference,
                "org.opencontainers.image.ref.name": img.tag,
            }),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    })
    files = {
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
    }
    for blob in [img.manifest, img.config, *(l.blob for l in img.layers)]:
        files["blobs/sha256/" + blob.digest.removeprefix("sha256:")] = blob.data
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs/", "blobs/sha256/"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, epoch
            tar.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, epoch
            tar.addfile(info, io.BytesIO(files[name]))
    tmp.replace(out)
