#!/usr/bin/env python3
"""Validates Kubernetes YAML against the upstream OpenAPI schemas of every Kubernetes minor
version from --min to the newest one the installed kubernetes-validate ships.

It runs kubernetes-validate's own validation (`kubernetes_validate.utils.validate(...,
strict=True)`, the code behind `kubernetes-validate --strict -k VERSION`) on each object,
with two differences from the CLI:
- a kind with no upstream schema is an ERROR, not a warning (the CLI exits 0 on it, so a
  misspelled apiVersion would pass);
- objects that upstream cannot know are skipped by API group: our CRD's kinds (authstack.io;
  the sample check validates them against the CRD) and the Prometheus Operator's
  ServiceMonitor (monitoring.coreos.com).

Usage: k8s_validate.py [--min 1.29] [--expect-invalid] FILE...
  --expect-invalid: every object must be rejected by every version (proves the check bites).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

try:
    import yaml
    from packaging.version import Version
    import kubernetes_validate
    import kubernetes_validate.utils as kv
except ImportError as e:  # pragma: no cover
    sys.exit(f"k8s_validate.py: {e}; run it with .cache/venv/bin/python (scripts/k8s-tools.sh)")

REPO_ROOT = Path(__file__).resolve().parent.parent
SKIPPED_GROUPS = {
    "authstack.io": "our CRD: validated by the real API server (operator/tests/e2e.rs, the_api_server_validates_authstacks)",
    "monitoring.coreos.com": "Prometheus Operator CRD: no upstream schema",
}

# The schemas are re-read for every object and version otherwise.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


def versions(minimum: str) -> list[str]:
    """Every minor version the installed package has schemas for, from `minimum` on."""
    found = sorted({kv.major_minor(v) for v in kv.all_versions()}, key=Version)
    chosen = [v for v in found if Version(v) >= Version(minimum)]
    if not chosen:
        sys.exit(f"kubernetes-validate {kubernetes_validate.__version__} ships schemas for "
                 f"{', '.join(found)}; none is >= {minimum}")
    return chosen


def rel(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return path


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min", default="1.29", help="oldest Kubernetes minor version (default 1.29)")
    ap.add_argument("--expect-invalid", action="store_true")
    ap.add_argument("--list-versions", action="store_true", help="print the versions and exit")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()

    vs = versions(args.min)
    if args.list_versions:
        print(" ".join(vs))
        return 0
    if not args.files:
        ap.error("no files")

    failures = validated = skipped = 0
    for path in args.files:
        try:
            docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
        except (OSError, yaml.YAMLError) as e:
            print(f"FAIL {rel(path)}: {e}", file=sys.stderr)
            failures += 1
            continue
        for doc in docs:
            if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
                print(f"FAIL {rel(path)}: a document has no apiVersion/kind: {str(doc)[:80]}", file=sys.stderr)
                failures += 1
                continue
            name = f"{doc['kind']}/{(doc.get('metadata') or {}).get('name', '<no name>')}"
            group = group_of(doc["apiVersion"])
            if group in SKIPPED_GROUPS:
                skipped += 1
                continue
            problems = []
            for v in vs:
                try:
                    kv.validate(doc, v, strict=True)
                except kv.ValidationError as e:
                    where = ".".join(str(p) for p in e.path) or "<root>"
                    problems.append(f"Kubernetes {v}: {where}: {e.message}")
                except kv.SchemaNotFoundError as e:
                    problems.append(f"Kubernetes {v}: {e.message}")
            validated += 1
            if args.expect_invalid:
                accepted = len(vs) - len(problems)
                if accepted:
                    failures += 1
                    print(f"FAIL {rel(path)} {name} was ACCEPTED by {accepted} version(s) but must be rejected",
                          file=sys.stderr)
                else:
                    print(f"ok   {rel(path)} {name} rejected ({problems[0]})")
            elif problems:
                failures += 1
                print(f"FAIL {rel(path)} {name}:", file=sys.stderr)
                for p in problems:
                    print(f"       {p}", file=sys.stderr)
    what = "rejected as expected" if args.expect_invalid else "valid"
    print(f"kubernetes-validate {kubernetes_validate.__version__} --strict, Kubernetes {vs[0]}..{vs[-1]} "
          f"({len(vs)} versions): {validated - failures if validated >= failures else 0} objects {what}, "
          f"{failures} failed, {skipped} skipped (CRD kinds)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
