"""Parsing image references the way Docker does (registry, repository, tag, digest)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DOCKER_HUB = "registry-1.docker.io"


class ReferenceError(ValueError):
    """A malformed image reference; the message says which part is wrong."""


@dataclass(frozen=True, slots=True)
class Reference:
    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> Reference:
        rest, _, digest = text.partition("@")
        if digest and not _DIGEST.match(digest):
            raise ReferenceError(f"{text}: the digest must be sha256: and 64 hexadecimal digits")
        name, tag = rest, ""
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            name, tag = rest.rsplit(":", 1)
            if not _TAG.match(tag):
                raise ReferenceError(f"{text}: {tag!r} is not a valid tag")
        first, _, remainder = name.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, remainder
        else:
            registry, repository = DOCKER_HUB, name
            if "/" not in repository:
                repository = f"library/{repository}"
        if not repository or repository != repository.lower():
            raise ReferenceError(f"{text}: the repository must be lower case")
        return cls(registry, repository, tag or ("" if digest else "latest"), digest)

    @property
    def name(self) -> str:
        """registry/repository as written in a FROM line or a policy (Docker Hub shortened)."""
        if self.registry == DOCKER_HUB:
            return self.repository.removeprefix("library/")
        return f"{self.registry}/{self.repository}"

    def pinned(self, digest: str) -> str:
        return f"{self.name}@{digest}"
