#!/usr/bin/env python3
"""Validates AuthStack resources against the generated CRD's openAPIV3Schema.

Upstream validators (kubernetes-validate) do not know our CRD, so this applies the schema in
crds/authstack.yaml the way the API server would, as closely as a JSON Schema validator can:

- OpenAPI-isms are converted: `nullable: true` admits null, `x-kubernetes-int-or-string`
  admits an integer or a string, `format: int32/int64` are range-checked;
- structural defaults are applied first (a missing `spec.postgres` becomes `managed`, as on the
  server), then the document is validated;
- unknown fields are errors (what `kubectl apply` does with its default `--validate=strict`),
  except under `x-kubernetes-preserve-unknown-fields`;
- `x-kubernetes-validations` CEL rules are evaluated by a small interpreter that knows the
  subset the CRD uses (`has()`, `size()`, field access, comparisons, `&&`, `||`, `!`); a rule
  outside it is reported and fails the run, so no rule is skipped silently.

Usage:
  validate_samples.py [--crd FILE] SAMPLE.yaml...          every AuthStack must be valid
  validate_samples.py [--crd FILE] --expect-invalid FILE... every AuthStack must be rejected,
      with an error containing its `test.authstack.io/expected-error` annotation

Other kinds in the files (e.g. the Secrets of a sample) are left to kubernetes-validate.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import Any, Iterator

try:
    import jsonschema
    import yaml
except ImportError as e:  # pragma: no cover
    sys.exit(f"validate_samples.py: {e}; run it with .cache/venv/bin/python (scripts/k8s-tools.sh)")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CRD = REPO_ROOT / "crds" / "authstack.yaml"
EXPECT_ANNOTATION = "test.authstack.io/expected-error"

DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


# --------------------------------------------------------------------------------------------
# Schema conversion: Kubernetes structural OpenAPI v3 -> JSON Schema (draft 2020-12)
# --------------------------------------------------------------------------------------------

KUBE_ONLY_KEYS = {
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-embedded-resource",
}


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """Converts one OpenAPI schema node (recursively)."""
    out: dict[str, Any] = {}
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    for key, value in node.items():
        if key in KUBE_ONLY_KEYS or key in ("nullable", "x-kubernetes-int-or-string",
                                            "x-kubernetes-preserve-unknown-fields", "default"):
            continue
        if key == "properties":
            out["properties"] = {k: to_json_schema(v) for k, v in value.items()}
        elif key == "additionalProperties":
            out["additionalProperties"] = value if isinstance(value, bool) else to_json_schema(value)
        elif key == "items":
            out["items"] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(v) for v in value]
        elif key == "not":
            out["not"] = to_json_schema(value)
        else:
            out[key] = copy.deepcopy(value)

    if node.get("x-kubernetes-int-or-string") is True:
        out.pop("type", None)
        if "anyOf" not in out:
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    # Strict field validation: unknown fields are errors unless the schema keeps them.
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out \
            and not preserve:
        out["additionalProperties"] = False
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else out["type"] + ["null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = out["enum"] + [None]
        if "anyOf" in out:
            out["anyOf"] = out["anyOf"] + [{"type": "null"}]
    return out


def root_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """The schema of a whole object: the CRD's schema plus apiVersion, kind and metadata."""
    schema = to_json_schema(openapi)
    props = schema.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": DNS1123_SUBDOMAIN, "maxLength": 253},
            "namespace": {"type": "string", "pattern": DNS1123_LABEL, "maxLength": 63},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker()

    @checker.checks("int32")
    def _int32(value: object) -> bool:
        return not isinstance(value, int) or -(2**31) <= value < 2**31

    @checker.checks("int64")
    def _int64(value: object) -> bool:
        return not isinstance(value, int) or -(2**63) <= value < 2**63

    return checker


# --------------------------------------------------------------------------------------------
# Structural defaulting (what the API server does before validation)
# --------------------------------------------------------------------------------------------

def apply_defaults(value: Any, node: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        for name, sub in node.get("properties", {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(value[name], sub)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in node.get("properties", {}):
                    value[name] = apply_defaults(value[name], extra)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        return [apply_defaults(v, node["items"]) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# A small CEL interpreter for x-kubernetes-validations
# --------------------------------------------------------------------------------------------

class UnsupportedCel(Exception):
    pass


class _Missing:
    """A field that is absent (has() is false; using it is an error)."""


MISSING = _Missing()

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>\d+)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!().])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)


def _tokenize(rule: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(rule):
        if rule[pos:].strip() == "":
            break
        m = _TOKEN.match(rule, pos)
        if not m:
            raise UnsupportedCel(f"unexpected input at {rule[pos:]!r}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class _Parser:
    """expr := or ; or := and ('||' and)* ; and := cmp ('&&' cmp)* ;
    cmp := unary (op unary)? ; unary := '!' unary | primary ;
    primary := num | str | 'true' | 'false' | 'has' '(' path ')' | 'size' '(' expr ')'
             | path | '(' expr ')' ; path := 'self' ('.' ident)*"""

    def __init__(self, rule: str):
        self.rule = rule
        self.tokens = _tokenize(rule)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise UnsupportedCel(f"expected {value or 'a token'} in {self.rule!r}")
        self.i += 1
        return tok

    def parse(self):
        tree = self.or_()
        if self.peek() is not None:
            raise UnsupportedCel(f"unsupported syntax near {self.peek()[1]!r}")
        return tree

    def or_(self):
        left = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            left = ("or", left, self.and_())
        return left

    def and_(self):
        left = self.cmp()
        while self.peek() == ("op", "&&"):
            self.take()
            left = ("and", left, self.cmp())
        return left

    def cmp(self):
        left = self.unary()
        tok = self.peek()
        if tok and tok[0] == "op" and tok[1] in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            return ("cmp", tok[1], left, self.unary())
        return left

    def unary(self):
        if self.peek() == ("op", "!"):
            self.take()
            return ("not", self.unary())
        return self.primary()

    def path(self):
        self.take("self")
        fields = []
        while self.peek() == ("op", "."):
            self.take()
            kind, name = self.take()
            if kind != "ident":
                raise UnsupportedCel(f"expected a field name in {self.rule!r}")
            fields.append(name)
        return ("path", tuple(fields))

    def primary(self):
        tok = self.peek()
        if tok is None:
            raise UnsupportedCel(f"unexpected end of {self.rule!r}")
        kind, text = tok
        if kind == "num":
            self.take()
            return ("lit", int(text))
        if kind == "str":
            self.take()
            return ("lit", bytes(text[1:-1], "utf-8").decode("unicode_escape"))
        if (kind, text) == ("op", "("):
            self.take()
            inner = self.or_()
            self.take(")")
            return inner
        if kind == "ident" and text in ("true", "false"):
            self.take()
            return ("lit", text == "true")
        if kind == "ident" and text == "has":
            self.take()
            self.take("(")
            p = self.path()
            self.take(")")
            if not p[1]:
                raise UnsupportedCel("has() needs a field")
            return ("has", p)
        if kind == "ident" and text == "size":
            self.take()
            self.take("(")
            inner = self.or_()
            self.take(")")
            return ("size", inner)
        if kind == "ident" and text == "self":
            return self.path()
        raise UnsupportedCel(f"unsupported {text!r} (the interpreter knows has(), size(), "
                             "self.field, literals, comparisons, &&, || and !)")


def _resolve(obj: Any, fields: tuple[str, ...]) -> Any:
    for f in fields:
        if not isinstance(obj, dict) or f not in obj:
            return MISSING
        obj = obj[f]
    return obj


def _eval(tree, self_value: Any) -> Any:
    op = tree[0]
    if op == "lit":
        return tree[1]
    if op == "path":
        v = _resolve(self_value, tree[1])
        if v is MISSING:
            raise ValueError(f"no such key: {'.'.join(tree[1])}")
        return v
    if op == "has":
        parent = _resolve(self_value, tree[1][1][:-1])
        return isinstance(parent, dict) and tree[1][1][-1] in parent
    if op == "size":
        v = _eval(tree[1], self_value)
        if not isinstance(v, (str, list, dict)):
            raise ValueError("size() of a non-collection")
        return len(v)
    if op == "not":
        return not _eval(tree[1], self_value)
    if op == "and":
        return bool(_eval(tree[1], self_value)) and bool(_eval(tree[2], self_value))
    if op == "or":
        return bool(_eval(tree[1], self_value)) or bool(_eval(tree[2], self_value))
    if op == "cmp":
        a, b = _eval(tree[2], self_value), _eval(tree[3], self_value)
        return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[tree[1]]
    raise UnsupportedCel(f"internal: {op}")


def cel_rules(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (path, rule) of a schema; paths use `*` for map values and `[]` for items."""
    for rule in node.get("x-kubernetes-validations", []):
        yield path, rule
    for name, sub in node.get("properties", {}).items():
        yield from cel_rules(sub, f"{path}.{name}" if path else name)
    if isinstance(node.get("additionalProperties"), dict):
        yield from cel_rules(node["additionalProperties"], f"{path}.*")
    if isinstance(node.get("items"), dict):
        yield from cel_rules(node["items"], f"{path}[]")


def check_cel(value: Any, node: dict[str, Any], path: str, errors: list[str]) -> None:
    for rule in node.get("x-kubernetes-validations", []):
        tree = _Parser(rule["rule"]).parse()
        try:
            ok = _eval(tree, value)
        except (ValueError, TypeError) as e:
            ok, detail = False, f" ({e})"
        else:
            detail = ""
        if not ok:
            where = path or "<root>"
            errors.append(f"{where}: {rule.get('message') or 'failed rule: ' + rule['rule']}{detail}")
    if isinstance(value, dict):
        for name, sub in node.get("properties", {}).items():
            if name in value and value[name] is not None:
                check_cel(value[name], sub, f"{path}.{name}" if path else name, errors)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for name, v in value.items():
                if name not in node.get("properties", {}) and v is not None:
                    check_cel(v, extra, f"{path}.{name}", errors)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, v in enumerate(value):
            check_cel(v, node["items"], f"{path}[{i}]", errors)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

class CrdSchemas:
    def __init__(self, crd_path: Path):
        docs = [d for d in yaml.safe_load_all(crd_path.read_text()) if d]
        crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
        if not crds:
            raise SystemExit(f"{crd_path}: no CustomResourceDefinition found")
        self.by_api: dict[tuple[str, str], dict[str, Any]] = {}
        self.checker = format_checker()
        for crd in crds:
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served", True):
                    continue
                openapi = version["schema"]["openAPIV3Schema"]
                # Fail early on a rule the interpreter cannot evaluate.
                for path, rule in cel_rules(openapi):
                    try:
                        _Parser(rule["rule"]).parse()
                    except UnsupportedCel as e:
                        raise SystemExit(
                            f"{crd_path}: CEL rule at {path or '<root>'} is outside what "
                            f"scripts/validate_samples.py evaluates: {rule['rule']!r}: {e}. "
                            "Extend the interpreter (or the rule) so samples stay checked.")
                schema = root_schema(openapi)
                jsonschema.Draft202012Validator.check_schema(schema)
                self.by_api[(f"{group}/{version['name']}", kind)] = {
                    "openapi": openapi,
                    "validator": jsonschema.Draft202012Validator(schema, format_checker=self.checker),
                }

    def handles(self, doc: dict[str, Any]) -> bool:
        return (doc.get("apiVersion"), doc.get("kind")) in self.by_api or \
            str(doc.get("apiVersion", "")).split("/")[0] in {a.split("/")[0] for a, _ in self.by_api}

    def errors(self, doc: dict[str, Any]) -> list[str]:
        entry = self.by_api.get((doc.get("apiVersion"), doc.get("kind")))
        if entry is None:
            served = ", ".join(f"{a} {k}" for a, k in sorted(self.by_api))
            return [f"apiVersion/kind {doc.get('apiVersion')} {doc.get('kind')} is not served by the CRD (served: {served})"]
        obj = apply_defaults(copy.deepcopy(doc), entry["openapi"])
        errs = []
        for e in sorted(entry["validator"].iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
            where = ".".join(str(p) for p in e.absolute_path) or "<root>"
            errs.append(f"{where}: {e.message}")
        check_cel(obj, entry["openapi"], "", errs)
        return errs


def documents(path: Path) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        raise SystemExit(f"{path}: invalid YAML: {e}")
    for d in docs:
        if not isinstance(d, dict):
            raise SystemExit(f"{path}: a document is not a mapping: {d!r}")
    return docs


def name_of(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name', '<no name>')}"


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crd", type=Path, default=DEFAULT_CRD, help="CRD file (default: crds/authstack.yaml)")
    ap.add_argument("--expect-invalid", action="store_true",
                    help="every AuthStack must be rejected (proves the check bites)")
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args()

    schemas = CrdSchemas(args.crd)
    failures = checked = 0
    for path in args.files:
        ours = [d for d in documents(path) if schemas.handles(d)]
        if not ours:
            print(f"FAIL {rel(path)}: no AuthStack in the file", file=sys.stderr)
            failures += 1
            continue
        for doc in ours:
            checked += 1
            errs = schemas.errors(doc)
            if not args.expect_invalid:
                if errs:
                    failures += 1
                    print(f"FAIL {rel(path)} {name_of(doc)} does not match the CRD schema ({rel(args.crd)}):",
                          file=sys.stderr)
                    for e in errs:
                        print(f"       {e}", file=sys.stderr)
                else:
                    print(f"ok   {rel(path)} {name_of(doc)}")
                continue
            expected = ((doc.get("metadata") or {}).get("annotations") or {}).get(EXPECT_ANNOTATION)
            if not expected:
                failures += 1
                print(f"FAIL {rel(path)} {name_of(doc)}: annotation {EXPECT_ANNOTATION} is missing",
                      file=sys.stderr)
            elif not errs:
                failures += 1
                print(f"FAIL {rel(path)} {name_of(doc)} was ACCEPTED but must be rejected ({expected})",
                      file=sys.stderr)
            elif not any(expected in e for e in errs):
                failures += 1
                print(f"FAIL {rel(path)} {name_of(doc)} was rejected, but not for {expected!r}:",
                      file=sys.stderr)
                for e in errs:
                    print(f"       {e}", file=sys.stderr)
            else:
                print(f"ok   {rel(path)} {name_of(doc)} rejected: {next(e for e in errs if expected in e)}")
    verdict = "valid" if not args.expect_invalid else "rejected as expected"
    print(f"{checked - failures if checked >= failures else 0} passed, {failures} failed "
          f"(AuthStacks {verdict}, schema {rel(args.crd)})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
