"""OCI image layouts on disk: write a one-layer image from a root file system tarball, read
an image's manifest back.

A layout (the directory `oci-layout`, `index.json` and `blobs/sha256/…` that the OCI image
specification defines) is what skopeo, umoci, buildah and registries all read, so the Debian
base built by mmdebstrap enters the image tools through one, with no Docker daemon. Every
byte written is a function of the inputs (sorted keys, the given creation time), so the same
tarball gives the same digest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"


class LayoutError(RuntimeError):
    """A layout that is missing, damaged, or lacks the tag asked for."""


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _put_blob(layout: Path, data: bytes, media_type: str) -> Descriptor:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Descriptor(media_type, f"sha256:{digest}", len(data))


def _put_file(layout: Path, source: Path, media_type: str) -> Descriptor:
    sha = hashlib.sha256()
    with source.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            sha.update(chunk)
    target = layout / "blobs" / "sha256" / sha.hexdigest()
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copyfile(source, target)
    return Descriptor(media_type, f"sha256:{sha.hexdigest()}", source.stat().st_size)


def write_rootfs_image(
    layout: Path,
    rootfs_tar: Path,
    *,
    tag: str,
    created: int,
    labels: dict[str, str],
    architecture: str = "amd64",
) -> Descriptor:
    """Write ``rootfs_tar`` (uncompressed) as a one-layer image tagged ``tag`` in ``layout``;
    returns the manifest's descriptor. ``created`` is seconds since the epoch (the
    SOURCE_DATE_EPOCH of the build), so no wall-clock time enters the image."""
    import datetime

    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_bytes(canonical(LAYOUT_VERSION))
    layer = _put_file(layout, rootfs_tar, LAYER_TAR)
    stamp = datetime.datetime.fromtimestamp(created, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = _put_blob(layout, canonical({
        "architecture": architecture,
        "os": "linux",
        "created": stamp,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": dict(sorted(labels.items())),
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
        "history": [{"created": stamp, "created_by": "mmdebstrap (see labels)"}],
    }), CONFIG)  # fmt: skip
    manifest = _put_blob(layout, canonical({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config.as_dict(),
        "layers": [layer.as_dict()],
    }), MANIFEST)  # fmt: skip
    index = {"schemaVersion": 2, "mediaType": INDEX,
             "manifests": [{**manifest.as_dict(), "annotations": {REF_NAME: tag}}]}  # fmt: skip
    (layout / "index.json").write_bytes(canonical(index))
    return manifest


def read_manifest(layout: Path, tag: str) -> tuple[Descriptor, dict[str, Any]]:
    """The manifest tagged ``tag`` in ``layout``: its descriptor and its parsed body."""
    try:
        index = json.loads((layout / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise LayoutError(f"{layout}: not an OCI image layout ({exc})") from None
    for entry in index.get("manifests", []):
        if entry.get("annotations", {}).get(REF_NAME) == tag:
            descriptor = Descriptor(entry["mediaType"], entry["digest"], entry["size"])
            body = json.loads(blob_path(layout, descriptor.digest).read_bytes())
            return descriptor, body
    tags = sorted(e.get("annotations", {}).get(REF_NAME, "?") for e in index.get("manifests", []))
    raise LayoutError(f"{layout}: no image tagged {tag!r} (tags: {', '.join(tags) or 'none'})")


def blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    return layout / "blobs" / algorithm / hexdigest


def image_size(layout: Path, tag: str) -> int:
    """Bytes a registry stores and a node pulls: manifest, config and compressed layers."""
    descriptor, manifest = read_manifest(layout, tag)
    return (
        descriptor.size
        + manifest["config"]["size"]
        + sum(layer["size"] for layer in manifest["layers"])
    )


def image_config(layout: Path, tag: str) -> dict[str, Any]:
    _, manifest = read_manifest(layout, tag)
    return json.loads(blob_path(layout, manifest["config"]["digest"]).read_bytes())
