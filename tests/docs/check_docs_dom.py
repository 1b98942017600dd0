"""Asserts that Swagger UI (/docs) and ReDoc (/redoc), rendered by headless Chromium with no
network beyond the gateway, show every operation of the gateway's OpenAPI description.

Usage: check_docs_dom.py OPENAPI_JSON SWAGGER_DOM REDOC_DOM SCREENSHOT...
"""

import json
import sys
from html.parser import HTMLParser


class Collect(HTMLParser):
    """Collects the attributes of every element."""

    def __init__(self):
        super().__init__()
        self.elements = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))


def parse(path):
    c = Collect()
    with open(path, encoding="utf-8") as f:
        c.feed(f.read())
    return c.elements


def main():
    spec_path, swagger_path, redoc_path, *screenshots = sys.argv[1:]
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    operations = [(method, path, op) for path, item in spec["paths"].items()
                  for method, op in item.items()]
    assert len(operations) >= 17, f"only {len(operations)} operations in the description"
    problems = []

    # Swagger UI: one `opblock` per operation, with its method class and a data-path span.
    swagger = parse(swagger_path)
    blocks = {(e[1].get("data-path")) for e in swagger if "opblock-summary-path" in e[1].get("class", "")}
    methods = [e[1]["class"] for e in swagger
               if e[0] == "div" and e[1].get("class", "").startswith("opblock opblock-")]
    for method, path, _ in operations:
        if path not in blocks:
            problems.append(f"Swagger UI does not show {method.upper()} {path}")
    if len(methods) != len(operations):
        problems.append(f"Swagger UI shows {len(methods)} operations, the description has {len(operations)}")

    # ReDoc: one section per operation, `tag/<tag>/operation/<operationId>`.
    redoc_ids = {e[1].get("id") for e in parse(redoc_path)}
    for method, path, op in operations:
        anchor = f"tag/{op['tags'][0]}/operation/{op['operationId']}"
        if anchor not in redoc_ids:
            problems.append(f"ReDoc does not show {method.upper()} {path} ({anchor})")

    for shot in screenshots:
        with open(shot, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                problems.append(f"{shot} is not a PNG")

    for p in problems:
        print("FAIL", p)
    if not problems:
        print(f"ok    Swagger UI and ReDoc render all {len(operations)} operations; "
              f"screenshots: {', '.join(screenshots)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
