#!/usr/bin/env bash
# `make docs-check`: the repository stands on its own and its documentation holds together.
# Fails, listing every problem, when
#   - a file refers to something outside the repository: a `../` path that leaves it (resolved
#     from the file's folder), a document in capitals (`NAME.md`, `NAME §n`) that the
#     repository does not have (vendored third-party assets excepted), or an absolute path of a
#     development machine (`/work/...`);
#   - a relative link in a Markdown file points at a missing file, a missing heading anchor, or
#     outside the repository;
#   - a `docs/<page>.md` named in any file does not exist;
#   - the code records a metric that docs/metrics.md does not list, or the page lists one the
#     code no longer records (names recorded with `metrics::counter!("…")` and the like, or
#     defined as `pub const X: &str = "…";` in a `metrics.rs`), or records one outside the
#     `authstack_` prefix;
#   - a file holds a merge conflict marker.
# Files are those git tracks plus new, not ignored ones (so it works before the first commit).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - "$(basename "$0")" <<'PY'
import os, re, subprocess, sys
from pathlib import Path

root = Path.cwd().resolve()
self_path = "scripts/" + sys.argv[1]
listed = subprocess.run(
    ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
    check=True, capture_output=True).stdout.decode().split("\0")
files = sorted(f for f in listed if f and (root / f).is_file())
problems = []

def text(path):
    try:
        return (root / path).read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None

# 1. References to things outside the repository.
machine_path = re.compile(r"(?<![\w.])/work/")
parent_path = re.compile(r"(?<![\w.])((?:\.\./)+[\w.-][\w./-]*)")
# A document cited by name (`NAME.md`) or by section (`NAME §4`): it must be in the repository.
cited_doc = re.compile(r"\b([A-Z][A-Z_-]*[A-Z])(?:\.md\b| ?§)")
doc_names = {Path(f).stem for f in files if f.endswith(".md")}

def inside(path):
    try:
        path.resolve().relative_to(root)
        return True
    except ValueError:
        return False

def leaves_repository(f, rel):
    """A `../` path leaves the repository, resolved from the file's folder."""
    return not inside(root / Path(f).parent / rel)

# Third-party files compiled in as they are (ReDoc): they cite their own project's documents.
vendored = ("gateway/assets/",)

for f in files:
    if f == self_path:
        continue
    body = text(f)
    if body is None:
        continue
    for n, line in enumerate(body.splitlines(), 1):
        found = [m.group(0) for m in machine_path.finditer(line)]
        found += [m.group(1) for m in parent_path.finditer(line) if leaves_repository(f, m.group(1))]
        if not f.startswith(vendored):
            found += [m.group(0) for m in cited_doc.finditer(line)
                      if m.group(1) not in doc_names]
        for what in found:
            problems.append(f"{f}:{n}: refers outside the repository ({what!r}); "
                            "point at the right page of docs/ instead")

# 2. Relative links and anchors in Markdown.
def strip_code(lines):
    """Lines outside fenced code blocks, with inline code removed."""
    fenced = False
    for n, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield n, re.sub(r"`[^`]*`", "", line)

def anchors(path):
    """GitHub's heading anchors of a Markdown file."""
    seen, out = {}, set()
    fenced = False
    for line in (root / path).read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out

link = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)")
links = 0
for f in files:
    if not f.endswith(".md"):
        continue
    for n, line in strip_code((root / f).read_text(encoding="utf-8").splitlines()):
        for m in link.finditer(line):
            target = m.group(1) or m.group(2)
            if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                continue  # http:, https:, mailto:
            links += 1
            path, _, fragment = target.partition("#")
            resolved = ((root / f).parent / path).resolve() if path else (root / f)
            where = f"{f}:{n}: link {target!r}"
            if root != resolved and root not in resolved.parents:
                problems.append(f"{where} leaves the repository")
            elif not resolved.exists():
                problems.append(f"{where}: no such file")
            elif fragment and resolved.suffix == ".md":
                if fragment not in anchors(resolved.relative_to(root)):
                    problems.append(f"{where}: no heading with anchor #{fragment}")

# 3. docs/ pages named anywhere.
page = re.compile(r"(?<![\w./-])docs/([\w-]+\.md)\b")
for f in files:
    body = text(f)
    if body is None:
        continue
    for n, line in enumerate(body.splitlines(), 1):
        for m in page.finditer(line):
            if not (root / "docs" / m.group(1)).is_file():
                problems.append(f"{f}:{n}: names docs/{m.group(1)}, which does not exist")

# 5. Leftover merge conflict markers.
conflict = re.compile(r"^(<{7} |>{7} |={7}$)", re.M)
for f in files:
    body = text(f)
    if body and (m := conflict.search(body)):
        problems.append(f"{f}:{body[:m.start()].count(chr(10)) + 1}: merge conflict marker")

# 4. Metrics recorded by the code (tests excluded) versus docs/metrics.md.
recorded = {}
call = re.compile(r"metrics::(?:counter|gauge|histogram)!\(\s*\"([^\"]+)\"")
# Names kept as constants in a crate's `metrics.rs` (one home per name) count as recorded.
named = re.compile(r"^pub const [A-Z0-9_]+: &str = \"([a-z_][a-z0-9_]*)\";", re.M)
for f in files:
    if not f.endswith(".rs") or "/tests/" in f"/{f}" or "/benches/" in f"/{f}":
        continue
    body = text(f) or ""
    body = body.split("#[cfg(test)]", 1)[0]
    found = list(call.finditer(body))
    if f.endswith("/metrics.rs"):
        found += list(named.finditer(body))
    for m in found:
        recorded.setdefault(m.group(1), f"{f}:{body[:m.start()].count(chr(10)) + 1}")
metrics_page = root / "docs/metrics.md"
documented = set()
if metrics_page.is_file():
    for line in metrics_page.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`([a-z_][a-z0-9_]*)`\s*\|", line)
        if m:
            documented.add(m.group(1))
for name, where in sorted(recorded.items()):
    if not name.startswith("authstack_"):
        problems.append(f"{where}: metric {name} is not under the authstack_ prefix")
    if name not in documented:
        problems.append(f"{where}: metric {name} is not listed in docs/metrics.md")
for name in sorted(documented - recorded.keys()):
    problems.append(f"docs/metrics.md lists {name}, which no code records")

# The bench's targets (bench/targets.json) are the ones docs/performance.md states.
targets_file, perf_page = root / "bench/targets.json", root / "docs/performance.md"
if targets_file.is_file() and perf_page.is_file():
    import json
    t = json.loads(targets_file.read_text(encoding="utf-8"))
    perf = perf_page.read_text(encoding="utf-8")
    stated = {
        "session_ratio": f"≥ {t['session_ratio']}×", "session_p99_ms": f"p99 < {t['session_p99_ms']} ms",
        "users_me_rps": f"≥ {t['users_me_rps']:,}/s", "users_me_p99_ms": f"p99 < {t['users_me_p99_ms']} ms",
        "refresh_rps": f"≥ {t['refresh_rps']:,}/s", "login_ratio": f"≥ {t['login_ratio']}×",
    }
    for key, phrase in stated.items():
        if phrase not in perf:
            problems.append(f"docs/performance.md does not state bench/targets.json's {key} as '{phrase}'")

if problems:
    print("\n".join(problems), file=sys.stderr)
    print(f"[docs-check] {len(problems)} problem(s)", file=sys.stderr)
    sys.exit(1)
print(f"[docs-check] ok: {len(files)} files, {links} relative links, {len(recorded)} metrics")
PY
