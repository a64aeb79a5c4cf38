"""A CycloneDX 1.5 JSON SBOM for each built image: its Debian, Python and npm packages with
their hashes.

The inventory is taken from what the build actually used, not from a scan afterwards: the
base's recorded package set (with the SHA-256 of each .deb from the download cache), the
wheels in the build context (each one's SHA-256, which the lock also pins), and for the proxy
the npm lock's integrity hashes. The document is deterministic (components sorted, the
serial number derived from the image digest, the time from SOURCE_DATE_EPOCH), so the same
image always has the same SBOM, and the SBOM names the image by digest.

Written by hand rather than with cyclonedx-python-lib: the three inventories are already
in hand, and the document is a few fixed fields; the library would add its dependency tree
to the hub's environment for that. The tests validate every SBOM against the
specification's JSON schema with that library (a test dependency only).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

MEDIA_TYPE = "application/vnd.cyclonedx+json"
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.*\.whl$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def debian_components(
    packages: dict[str, tuple[str, str]], hashes: dict[str, str]
) -> list[dict[str, Any]]:
    out = []
    for name, (version, arch) in packages.items():
        component: dict[str, Any] = {
            "type": "library", "name": name, "version": version,
            "purl": f"pkg:deb/debian/{name}@{version}?arch={arch}&distro=debian-12",
        }  # fmt: skip
        if name in hashes:
            component["hashes"] = [{"alg": "SHA-256", "content": hashes[name]}]
        out.append(component)
    return out


def python_components(wheels: list[Path]) -> list[dict[str, Any]]:
    out = []
    for wheel in wheels:
        match = _WHEEL.match(wheel.name)
        if not match:
            continue
        name, version = _normalise(match["name"]), match["version"]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        out.append({"type": "library", "name": name, "version": version,
                    "purl": f"pkg:pypi/{name}@{version}",
                    "hashes": [{"alg": "SHA-256", "content": digest}]})  # fmt: skip
    return out


def npm_components(lock: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for path, entry in lock.get("packages", {}).items():
        if not path or entry.get("dev"):
            continue
        name = path.rsplit("node_modules/", 1)[-1]
        version = entry.get("version", "")
        purl = f"pkg:npm/{name.replace('@', '%40')}@{version}"
        component: dict[str, Any] = {"type": "library", "name": name, "version": version,
                                     "purl": purl}  # fmt: skip
        algorithm, _, digest = entry.get("integrity", "").partition("-")
        if algorithm == "sha512" and digest:
            component["hashes"] = [{"alg": "SHA-512",
                                    "content": base64.b64decode(digest).hex()}]  # fmt: skip
        out.append(component)
    return out


def make_sbom(
    *,
    image: str,
    version: str,
    digest: str,
    epoch: int,
    components: list[dict[str, Any]],
    tool_version: str,
) -> dict[str, Any]:
    """The CycloneDX document for the image ``image`` (a name) at ``digest``."""
    stamp = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    unique: dict[str, dict[str, Any]] = {}
    for component in components:
        component = {**component, "bom-ref": component["purl"]}
        unique[component["purl"]] = component
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{image}@{digest}')}",
        "version": 1,
        "metadata": {
            "timestamp": stamp,
            "tools": {
                "components": [{"type": "application", "name": "sovhub", "version": tool_version}]
            },
            "component": {
                "type": "container",
                "name": image,
                "version": version,
                "bom-ref": f"{image}@{digest}",
                "hashes": [{"alg": "SHA-256", "content": digest.removeprefix("sha256:")}],
            },
        },
        "components": [unique[key] for key in sorted(unique)],
    }


def write_sbom(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path
