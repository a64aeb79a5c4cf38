"""Container image references: the one place they are parsed, checked and taken apart.

Docker's grammar (registry, repository, tag, digest) for ``sovhub images``, and
the stricter rule the policy sets: every image is pinned, ``registry/repo@sha256:…``.
Pure and dependency-free, so the policy loader, the spawner, the audit trail
and the plain ``sovhub`` install can all import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
"""A content digest as registries give it: ``sha256:`` and 64 lowercase hex digits."""
PINNED = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+)"
    r"@(?P<digest>sha256:[0-9a-f]{64})$"
)
"""A reference pinned by digest with its registry named: what the policy accepts."""
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DOCKER_HUB = "registry-1.docker.io"


class ImageReferenceError(ValueError):
    """A malformed image reference; the message says which part is wrong.

    ``kind`` is a stable code for the problem (``image_digest``, ``image_tag``…).
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def digest_of(image: str) -> str:
    """The digest of a reference (``…@sha256:…``); empty when it has none."""
    _, at, digest = image.rpartition("@")
    return digest if at else ""


def require_pinned(value: str) -> str:
    """``value`` if it is pinned as :data:`PINNED` says; otherwise the error names what is off."""
    if PINNED.match(value):
        return value
    name, at, digest = value.partition("@")
    if at and not DIGEST.match(digest):
        raise ImageReferenceError(
            f"{value!r} has a malformed digest: expected registry/repo@sha256: followed by "
            "64 lowercase hex digits",
            "image_digest",
        )
    if at and ":" in name.rsplit("/", 1)[-1]:
        raise ImageReferenceError(
            f"{value!r} has both a tag and a digest; write only the digest "
            "(registry/repo@sha256:...) so what runs cannot be misread",
            "image_tag_and_digest",
        )
    if at:
        raise ImageReferenceError(
            f"{value!r} must name its registry and repository (registry/repo@sha256:...); "
            "for Docker Hub write docker.io/library/NAME",
            "image_name",
        )
    raise ImageReferenceError(
        f"{value!r} is not pinned by digest; images must be written "
        "registry/repo@sha256:<64 hex> (tags can move; `sovhub images pin` resolves a tag "
        "to its digest)",
        "image_tag",
    )


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference as Docker reads it, with Docker Hub's defaults filled in."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> Reference:
        rest, _, digest = text.partition("@")
        if digest and not DIGEST.match(digest):
            raise ImageReferenceError(
                f"{text}: the digest must be sha256: and 64 hexadecimal digits", "image_digest"
            )
        name, tag = rest, ""
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            name, tag = rest.rsplit(":", 1)
            if not _TAG.match(tag):
                raise ImageReferenceError(f"{text}: {tag!r} is not a valid tag", "image_tag")
        first, _, remainder = name.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, remainder
        else:
            registry, repository = DOCKER_HUB, name
            if "/" not in repository:
                repository = f"library/{repository}"
        if not repository or repository != repository.lower():
            raise ImageReferenceError(f"{text}: the repository must be lower case", "image_name")
        return cls(registry, repository, tag or ("" if digest else "latest"), digest)

    @property
    def name(self) -> str:
        """registry/repository as written in a FROM line or a policy (Docker Hub shortened)."""
        if self.registry == DOCKER_HUB:
            return self.repository.removeprefix("library/")
        return f"{self.registry}/{self.repository}"

    def pinned(self, digest: str) -> str:
        return f"{self.name}@{digest}"
