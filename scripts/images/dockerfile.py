"""The repository's Dockerfile read as the one description of the service images: for a build
target, the base it stands on, the user, environment, labels, exposed ports, entrypoint and
the files it copies from the build stage (parsed with `dockerfile-parse`)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser
from dockerfile_parse.parser import image_from


class DockerfileError(Exception):
    """The Dockerfile uses something this reader does not understand."""


@dataclass
class Copy:
    """`COPY --from=<stage> --chown=u:g --chmod=m <source> <dest>`."""

    stage: str
    source: str
    dest: str
    uid: int
    gid: int
    mode: int


@dataclass
class Target:
    """What a build target adds to its base image, with its parent stages folded in."""

    name: str
    base: str = ""  # the external image the first stage starts FROM
    user: str = ""
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    copies: list[Copy] = field(default_factory=list)


def _copy(value: str, line: int) -> Copy:
    words = shlex.split(value)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, val = words.pop(0)[2:].partition("=")
        flags[key] = val
    if len(words) != 2 or "from" not in flags:
        raise DockerfileError(f"line {line}: only `COPY --from=<stage> <file> <dest>` is supported")
    uid, _, gid = flags.get("chown", "0:0").partition(":")
    return Copy(flags["from"], words[0], words[1], int(uid), int(gid or uid),
                int(flags.get("chmod", "0644"), 8))


def targets(path: Path, build_args: dict[str, str]) -> dict[str, Target]:
    """Every stage of the Dockerfile, each with its parent stages' settings applied."""
    parser = DockerfileParser(str(path), build_args=build_args)
    stages: dict[str, Target] = {}
    current: Target | None = None
    top_args: dict[str, str] = {}
    for instr, ctx in zip(parser.structure, parser.context_structure):
        kind, value, line = instr["instruction"], instr["value"], instr["startline"] + 1
        if kind == "COMMENT":
            continue
        if kind == "ARG" and current is None:
            top_args.update(ctx.args)
            continue
        if kind == "FROM":
            image, name = image_from(value)
            if image is None or name is None:
                raise DockerfileError(f"line {line}: every stage needs `FROM <image> AS <name>`")
            for key, val in top_args.items():
                image = image.replace("${" + key + "}", val).replace("$" + key, val)
            parent = stages.get(image)
            current = Target(name=name, base=image) if parent is None else Target(
                name=name, base=parent.base, user=parent.user, env=dict(parent.env),
                labels=dict(parent.labels), exposed_ports=list(parent.exposed_ports),
                entrypoint=list(parent.entrypoint), copies=list(parent.copies))
            stages[name] = current
            continue
        if current is None:
            raise DockerfileError(f"line {line}: {kind} before the first FROM")
        if kind == "LABEL":
            current.labels.update(ctx.labels)
        elif kind == "ENV":
            current.env.update(ctx.envs)
        elif kind == "USER":
            current.user = value.strip()
        elif kind == "EXPOSE":
            current.exposed_ports += [p if "/" in p else f"{p}/tcp" for p in value.split()]
        elif kind == "ENTRYPOINT":
            try:
                current.entrypoint = json.loads(value)
            except json.JSONDecodeError as e:
                raise DockerfileError(f"line {line}: ENTRYPOINT must be in JSON (exec) form") from e
        elif kind == "COPY" and "--from=" in value:
            current.copies.append(_copy(value, line))
    return stages
