"""Release built images: push each by digest with its SBOM beside it, then write the digests
where the chart and the policy use them, in one step.

* The image's OCI layout goes to the registry with `skopeo copy --preserve-digests`, so the
  digest pushed is the digest built (checked afterwards by resolving the tag).
* Its CycloneDX SBOM goes beside it as an OCI artifact: a manifest whose `artifactType` is
  CycloneDX JSON, whose one layer is the SBOM and whose `subject` is the image, tagged
  `sha256-<image digest>.sbom` (the tag scheme tools use with registries that have no
  referrers API, such as distribution 2.8), so `oras`/`skopeo` users find it by the digest.
* The chart's values get the hub and proxy images by digest and each notebook image
  (notebook-cpu, and notebook-gpu when it was built) as a version of its policy channel
  (the pre-puller pulls every channel version, so it follows); the policy files get the
  same versions. YAML is edited with ruamel.yaml's round trip, so
  comments and order stay, and the policies are validated before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

from .build import Artifact as Built
from .oci import MANIFEST, canonical
from .pin import pin_policy
from .reference import Reference
from .registry import Registry, RegistryError
from .sbom import MEDIA_TYPE as SBOM_TYPE

EMPTY_TYPE = "application/vnd.oci.empty.v1+json"


class ReleaseError(RuntimeError):
    """A push or a write that failed; the message names the image or the file."""


@dataclass(frozen=True, slots=True)
class Released:
    name: str
    image: str  # registry/repository@sha256:…
    sbom: str  # registry/repository@sha256:… of the SBOM artifact


def sbom_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sbom"


class Pusher:
    """Pushes to one registry (``host``, e.g. `registry.example:5000`) under ``prefix``."""

    def __init__(self, host: str, prefix: str = "sovereign-hub", plain_http: bool = False) -> None:
        self.host, self.prefix, self.plain_http = host, prefix.strip("/"), plain_http
        self.scheme = "http" if plain_http else "https"

    def repository(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def push_image(self, built: Built) -> str:
        repository = self.repository(built.name)
        target = f"docker://{self.host}/{repository}:{built.tag}"
        command = ["skopeo", "copy", "--quiet", "--preserve-digests",
                   f"oci:{built.layout}:{built.tag}", target]  # fmt: skip
        if self.plain_http:
            command.insert(2, "--dest-tls-verify=false")
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise ReleaseError(f"pushing {built.name} to {target}: {done.stderr.strip()}")
        try:
            pushed = Registry(plain_http=self.plain_http).resolve(
                Reference.parse(f"{self.host}/{repository}:{built.tag}")
            )
        except RegistryError as exc:
            raise ReleaseError(f"{built.name}: pushed, but cannot read it back: {exc}") from None
        if pushed.digest != built.digest:
            raise ReleaseError(
                f"{built.name}: built {built.digest} but the registry holds {pushed.digest}"
            )
        return f"{self.host}/{repository}@{built.digest}"

    def _blob(self, repository: str, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        base = f"{self.scheme}://{self.host}/v2/{repository}/blobs/uploads/"
        start = requests.post(base, timeout=30)
        if start.status_code != 202:
            raise ReleaseError(f"{repository}: blob upload refused ({start.status_code})")
        location = start.headers["Location"]
        if location.startswith("/"):
            location = f"{self.scheme}://{self.host}{location}"
        separator = "&" if "?" in location else "?"
        done = requests.put(f"{location}{separator}digest={digest}", data=data, timeout=60,
                            headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        if done.status_code != 201:
            raise ReleaseError(f"{repository}: blob {digest} refused ({done.status_code})")
        return {"digest": digest, "size": len(data)}

    def push_sbom(self, built: Built, manifest_size: int) -> str:
        """The SBOM as an artifact whose subject is the image; returns its reference."""
        repository = self.repository(built.name)
        config = {"mediaType": EMPTY_TYPE, **self._blob(repository, b"{}")}
        layer = {"mediaType": SBOM_TYPE, **self._blob(repository, built.sbom.read_bytes()),
                 "annotations": {"org.opencontainers.image.title": built.sbom.name}}  # fmt: skip
        manifest = {
            "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": SBOM_TYPE,
            "config": config, "layers": [layer],
            "subject": {"mediaType": MANIFEST, "digest": built.digest, "size": manifest_size},
        }  # fmt: skip
        body = canonical(manifest)
        url = f"{self.scheme}://{self.host}/v2/{repository}/manifests/{sbom_tag(built.digest)}"
        done = requests.put(url, data=body, headers={"Content-Type": MANIFEST}, timeout=30)
        if done.status_code != 201:
            raise ReleaseError(f"{repository}: SBOM manifest refused: {done.text.strip()}")
        return f"{self.host}/{repository}@sha256:{hashlib.sha256(body).hexdigest()}"


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    # The chart's values indent lists under their key (`key:\n  - item`); keep that style,
    # so the release's diff is the digests and nothing else.
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def notebook_channels(channel: str, gpu_channel: str) -> dict[str, str]:
    """Which policy channel each notebook image is released into."""
    return {"notebook-cpu": channel, "notebook-gpu": gpu_channel}


def pin_notebooks(
    text: str, file: str, images: dict[str, str], channels: dict[str, str], version: str
) -> str:
    """The policy ``text`` with each released notebook image as ``version`` of its channel."""
    for name, channel in channels.items():
        if name in images:
            text = pin_policy(text, file, channel, version, images[name])
    return text


def write_values(
    text: str, file: str, images: dict[str, str], channels: dict[str, str], version: str
) -> str:
    """The chart's values ``text`` with hub and proxy pinned and each notebook image as
    ``version`` of its policy channel (``channels``: image name -> channel).
    ``images`` maps name -> repo@digest."""
    yaml = _yaml()
    document = yaml.load(text)
    for name in ("hub", "proxy"):
        if name in images:
            repository, digest = images[name].split("@")
            document[name]["image"]["repository"] = repository
            document[name]["image"]["digest"] = digest
    result = io.StringIO()
    yaml.dump(document, result)
    values = result.getvalue()
    if not any(name in images for name in channels):
        return values
    # The policy inside the values goes through the same pin (and validation) as a file:
    # the admin's `policy`, or, while that is empty (the chart's own values), the example.
    document = yaml.load(values)
    key = "policy" if document.get("policy") else "examplePolicy"
    if isinstance(document[key], str):
        # The policy given as text (`--set-file policy=…`, a `|` block): pinned as the text
        # it is, so its order and comments stay, and written back as a literal block.
        text = pin_notebooks(document[key], f"{file}: {key}", images, channels, version)
        document[key] = LiteralScalarString(text)
        result = io.StringIO()
        yaml.dump(document, result)
        return result.getvalue()
    if key == "examplePolicy":
        # The chart's example offers CPU profiles only: a GPU image has no channel there.
        # An admin's own policy must have every channel released into (else refused).
        present = document[key].get("channels") or {}
        channels = {name: ch for name, ch in channels.items() if ch in present}
    policy = io.StringIO()
    yaml.dump(document[key], policy)
    pinned = pin_notebooks(policy.getvalue(), f"{file}: {key}", images, channels, version)
    document[key] = yaml.load(pinned)
    result = io.StringIO()
    yaml.dump(document, result)
    return result.getvalue()


def release(
    builds: list[Built],
    pusher: Pusher,
    *,
    values: Path,
    policies: list[Path],
    channels: dict[str, str],
    version: str,
) -> list[Released]:
    """Push every build and its SBOM, then write the digests into ``values`` and
    ``policies``. Nothing is written unless every push succeeded and every file validates."""
    released, images = [], {}
    for built in builds:
        image = pusher.push_image(built)
        size = (built.layout / "blobs" / "sha256" / built.digest.split(":")[1]).stat().st_size
        released.append(Released(built.name, image, pusher.push_sbom(built, size)))
        images[built.name] = image
    updates = [(values, write_values(values.read_text(), str(values), images, channels, version))]
    for policy in policies:
        pinned = pin_notebooks(policy.read_text(), str(policy), images, channels, version)
        updates.append((policy, pinned))
    for path, text in updates:
        path.write_text(text)
    return released


def digest_manifest(released: list[Released]) -> str:
    return json.dumps({r.name: {"image": r.image, "sbom": r.sbom} for r in released}, indent=1)
