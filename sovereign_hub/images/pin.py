"""Write a resolved digest where it is used: Dockerfiles' FROM lines (or the build argument
they name) and the policy's channels.

The policy is edited with ruamel.yaml's round trip, which keeps the admin's
comments, order and quoting; the result is validated with the policy loader
before anything is written. Each change is shown as a unified diff.
"""

from __future__ import annotations

import datetime
import difflib
import io
import re
from pathlib import Path

from ruamel.yaml import YAML

from sovereign_hub.policy import parse_policy

from .reference import ImageReferenceError, Reference

_FROM = re.compile(r"^(\s*FROM\s+)(?:--platform=\S+\s+)?(\S+)(.*)$", re.IGNORECASE)
_ARG = re.compile(r"^\s*ARG\s+(?P<name>\w+)=(?P<quote>[\"']?)(?P<value>[^\s\"']+)(?P=quote)\s*$",
                  re.IGNORECASE)  # fmt: skip


class PinError(ValueError):
    """A pin that cannot be applied; the message names the file and what is wrong."""


def diff(path: Path, before: str, after: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True),
            fromfile=f"a/{path}", tofile=f"b/{path}",
        )
    )  # fmt: skip


def pin_dockerfile(text: str, ref: Reference, digest: str) -> str:
    """``text`` with every FROM of ``ref``'s repository pinned to ``digest``.

    A base given as a build argument (``ARG BASE=<image>`` then ``FROM ${BASE}``, as this
    project's Dockerfiles do so that other builders can swap the base) is pinned in the
    ARG's default, where the image is named.
    """

    def same_repository(image: str) -> bool:
        try:
            current = Reference.parse(image)
        except ImageReferenceError:
            return False
        return (current.registry, current.repository) == (ref.registry, ref.repository)

    lines = text.splitlines(keepends=True)
    from_args = {
        name
        for line in lines
        if (m := _FROM.match(line))
        for name in re.findall(r"\$\{?(\w+)\}?", m.group(2))
    }
    out = []
    for line in lines:
        if (m := _FROM.match(line)) and same_repository(m.group(2)):
            line = line.replace(m.group(2), ref.pinned(digest), 1)
        elif (
            (m := _ARG.match(line))
            and m.group("name") in from_args
            and same_repository(m.group("value"))
        ):
            line = line.replace(m.group("value"), ref.pinned(digest), 1)
        out.append(line)
    return "".join(out)


def pin_policy(text: str, file: str, channel: str, version: str, image: str) -> str:
    """``text`` with ``version`` of ``channel`` pointing at ``image`` (added if new)."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    document = yaml.load(text)
    channels = document.get("channels") or {}
    if channel not in channels:
        known = ", ".join(channels) or "none"
        raise PinError(f"{file}: channels: no channel {channel!r} (known: {known})")
    versions = channels[channel].setdefault("versions", [])
    existing = next((v for v in versions if str(v.get("version")) == version), None)
    if existing is not None:
        existing["image"] = image
    else:
        entry = {"version": version, "image": image, "released": datetime.date.today().isoformat()}
        versions.append(entry)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    result = buffer.getvalue()
    parse_policy(result, file)  # refuse to write a policy the hub would refuse
    return result
