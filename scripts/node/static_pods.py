#!/usr/bin/env python3
"""Turns the objects `authstack-render` prints into kubelet static pods, so that the
operator's own pod specs (images, commands, probes, security contexts, hooks) run on a
kubelet without an API server.

A static pod cannot refer to API objects, so only what needs the API server is replaced, the
way the kubelet would have materialised it:
  - env `secretKeyRef` -> the literal value from the rendered Secret;
  - `secret` / `configMap` volumes -> hostPath directories with one file per key, group-owned by
    the pod's fsGroup with the volume's defaultMode (what the kubelet does for those volumes);
  - a StatefulSet's volumeClaimTemplates -> hostPath directories, group-owned by the fsGroup and
    group-writable (what a volume with fsGroup support looks like to the pod);
  - Service names -> `hostAliases` to the pod IPs given with `--host NAME=IP` (no cluster DNS);
  - `serviceAccountName` is dropped (the kubelet refuses it in static pods; the operator's pods
    do not mount a token anyway: automountServiceAccountToken is false).
Everything else of the pod template is kept as the operator wrote it. One pod per workload
(`<name>-0` for a StatefulSet, `<name>-static` for a Deployment).

  static_pods.py render.yaml --manifests DIR --volumes DIR [--only NAME...] [--host NAME=IP...]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path

import yaml

WORKLOADS = ("StatefulSet", "Deployment")


def load(path: Path) -> list[dict]:
    """The rendered objects."""
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def data_of(objects: list[dict], kind: str, name: str) -> dict[str, bytes]:
    """A Secret's (base64) or ConfigMap's data, decoded."""
    for o in objects:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            if kind == "Secret":
                return {k: base64.b64decode(v) for k, v in (o.get("data") or {}).items()}
            return {k: v.encode() for k, v in (o.get("data") or {}).items()}
    raise SystemExit(f"the rendered objects have no {kind} {name}")


def write_files(directory: Path, files: dict[str, bytes], mode: int, gid: int) -> None:
    """The files of a secret or configMap volume (replaced whole, like the kubelet's atomic
    update)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, 0, gid)
    os.chmod(directory, 0o755)
    for old in directory.iterdir():
        old.unlink()
    for key, content in sorted(files.items()):
        path = directory / key
        path.write_bytes(content)
        os.chown(path, 0, gid)
        os.chmod(path, mode)


def resolve_env(objects: list[dict], container: dict) -> None:
    for e in container.get("env") or []:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            e["value"] = data_of(objects, "Secret", ref["name"])[ref["key"]].decode()
            del e["valueFrom"]


def static_pod(objects: list[dict], workload: dict, volumes: Path, hosts: dict[str, str]) -> dict:
    """The workload's pod template as a static pod."""
    name = workload["metadata"]["name"]
    namespace = workload["metadata"]["namespace"]
    stateful = workload["kind"] == "StatefulSet"  # only StatefulSets have claim templates
    template = workload["spec"]["template"]
    spec = json.loads(json.dumps(template["spec"]))
    spec.pop("serviceAccountName", None)
    fs_group = (spec.get("securityContext") or {}).get("fsGroup", 0)
    pod_dir = volumes / namespace / name

    for c in spec.get("initContainers", []) + spec["containers"]:
        resolve_env(objects, c)
    new_volumes = []
    for v in spec.get("volumes") or []:
        if "secret" in v or "configMap" in v:
            kind, src = ("Secret", v["secret"]) if "secret" in v else ("ConfigMap", v["configMap"])
            ref = src.get("secretName") or src.get("name")
            files = data_of(objects, kind, ref)
            if src.get("items"):
                files = {i["path"]: files[i["key"]] for i in src["items"]}
            directory = pod_dir / v["name"]
            write_files(directory, files, src.get("defaultMode", 0o644), fs_group)
            new_volumes.append({"name": v["name"], "hostPath": {"path": str(directory), "type": "Directory"}})
        else:
            new_volumes.append(v)
    claims = workload["spec"].get("volumeClaimTemplates") or []
    for claim in claims:
        directory = pod_dir / claim["metadata"]["name"]
        directory.mkdir(parents=True, exist_ok=True)
        os.chown(directory, 0, fs_group)
        os.chmod(directory, 0o2775)
        new_volumes.append({"name": claim["metadata"]["name"],
                            "hostPath": {"path": str(directory), "type": "Directory"}})
    spec["volumes"] = new_volumes
    aliases = {}
    for svc in (o for o in objects if o["kind"] == "Service"):
        svc_name, svc_ns = svc["metadata"]["name"], svc["metadata"]["namespace"]
        if svc_name in hosts:
            names = [f"{svc_name}.{svc_ns}.svc.cluster.local", f"{svc_name}.{svc_ns}.svc",
                     f"{svc_name}.{svc_ns}", svc_name]
            aliases.setdefault(hosts[svc_name], []).extend(names)
    if aliases:
        spec["hostAliases"] = [{"ip": ip, "hostnames": h} for ip, h in sorted(aliases.items())]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-0" if stateful else f"{name}-static",
            "namespace": namespace,
            "labels": template["metadata"].get("labels", {}),
            "annotations": template["metadata"].get("annotations", {}),
        },
        "spec": spec,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rendered", type=Path, help="output of authstack-render")
    p.add_argument("--manifests", type=Path, required=True, help="the kubelet's staticPodPath")
    p.add_argument("--volumes", type=Path, required=True, help="where volume contents are written")
    p.add_argument("--only", nargs="*", default=[], help="workload names (default: all)")
    p.add_argument("--host", action="append", default=[], metavar="SERVICE=IP",
                   help="resolve this Service's names to this IP in every pod")
    args = p.parse_args()
    hosts = {}
    for h in args.host:
        svc, sep, ip = h.partition("=")
        if not sep:
            p.error(f"--host wants SERVICE=IP, got {h!r}")
        hosts[svc] = ip
    objects = load(args.rendered)
    args.manifests.mkdir(parents=True, exist_ok=True)
    written = []
    for w in objects:
        if w["kind"] not in WORKLOADS or (args.only and w["metadata"]["name"] not in args.only):
            continue
        pod = static_pod(objects, w, args.volumes, hosts)
        path = args.manifests / f"{pod['metadata']['name']}.yaml"
        tmp = path.with_name(f".{path.name}.tmp")  # the kubelet skips dot files: no half-written pod
        tmp.write_text(yaml.safe_dump(pod, sort_keys=False))
        tmp.replace(path)
        written.append(pod["metadata"]["name"])
    if not written:
        print("no workload matched", file=sys.stderr)
        return 1
    print(" ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
