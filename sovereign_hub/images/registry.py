"""A small client of the OCI distribution API: resolve a tag to its manifest digest.

It asks for any of the four manifest media types (OCI index and manifest,
Docker manifest list and manifest), so a multi-architecture tag resolves to
its index digest (the one that pins every platform at once), and it follows
the bearer-token challenge that registries such as Docker Hub, GHCR and Quay
answer with (`WWW-Authenticate: Bearer realm=…,service=…,scope=…`).
Credentials, when a registry needs them, come from the environment
(SOVEREIGN_REGISTRY_USERNAME / SOVEREIGN_REGISTRY_PASSWORD), never from files
in the repository.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

import requests

from .reference import Reference

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(RuntimeError):
    """The registry refused or failed; the message names the image and the reason."""


@dataclass(frozen=True, slots=True)
class Resolved:
    reference: Reference
    digest: str
    media_type: str
    platforms: tuple[str, ...] = field(default_factory=tuple)

    @property
    def multi_arch(self) -> bool:
        return self.media_type in INDEX_TYPES


class Registry:
    def __init__(self, plain_http: bool = False, timeout: float = 30.0) -> None:
        self.plain_http = plain_http
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "sovhub-images-pin"
        self._tokens: dict[str, str] = {}

    def _url(self, ref: Reference, what: str) -> str:
        scheme = "http" if self.plain_http else "https"
        return f"{scheme}://{ref.registry}/v2/{ref.repository}/manifests/{what}"

    def _token(self, challenge: str, ref: Reference) -> str:
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not challenge.lower().startswith("bearer") or not realm:
            raise RegistryError(f"{ref.name}: the registry asks for {challenge.split()[0]} auth")
        params.setdefault("scope", f"repository:{ref.repository}:pull")
        user = os.environ.get("SOVEREIGN_REGISTRY_USERNAME")
        auth = (user, os.environ.get("SOVEREIGN_REGISTRY_PASSWORD", "")) if user else None
        answer = self.session.get(realm, params=params, auth=auth, timeout=self.timeout)
        if answer.status_code != 200:
            raise RegistryError(f"{ref.name}: the token service refused ({answer.status_code})")
        body = answer.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"{ref.name}: the token service returned no token")
        return str(token)

    def _get(self, ref: Reference, what: str) -> requests.Response:
        url = self._url(ref, what)
        headers = {"Accept": ACCEPT}
        key = f"{ref.registry}/{ref.repository}"
        if key in self._tokens:
            headers["Authorization"] = f"Bearer {self._tokens[key]}"
        try:
            answer = self.session.get(url, headers=headers, timeout=self.timeout)
            if answer.status_code == 401 and "WWW-Authenticate" in answer.headers:
                self._tokens[key] = self._token(answer.headers["WWW-Authenticate"], ref)
                headers["Authorization"] = f"Bearer {self._tokens[key]}"
                answer = self.session.get(url, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RegistryError(f"{ref.name}: cannot reach {ref.registry} ({exc})") from None
        if answer.status_code == 404:
            raise RegistryError(f"{ref.name}:{what}: no such tag or manifest in {ref.registry}")
        if answer.status_code != 200:
            raise RegistryError(f"{ref.name}:{what}: the registry answered {answer.status_code}")
        return answer

    def resolve(self, ref: Reference) -> Resolved:
        """The digest ``ref``'s tag points at, checked against the manifest's bytes."""
        answer = self._get(ref, ref.digest or ref.tag)
        digest = "sha256:" + hashlib.sha256(answer.content).hexdigest()
        claimed = answer.headers.get("Docker-Content-Digest")
        if claimed and claimed != digest:
            raise RegistryError(
                f"{ref.name}: the registry says {claimed} but the manifest hashes to {digest}"
            )
        if ref.digest and ref.digest != digest:
            raise RegistryError(f"{ref.name}: asked for {ref.digest}, got {digest}")
        media_type = answer.headers.get("Content-Type", "").split(";")[0].strip()
        body: dict[str, Any] = answer.json()
        media_type = body.get("mediaType", media_type) or media_type
        platforms: tuple[str, ...] = ()
        if media_type in INDEX_TYPES:
            platforms = tuple(_platform(m.get("platform") or {}) for m in body.get("manifests", []))
        return Resolved(ref, digest, media_type, platforms)


def _platform(spec: dict[str, str]) -> str:
    return "/".join(p for p in (spec.get("os"), spec.get("architecture"), spec.get("variant")) if p)
