"""The air-gap bundle: one archive with the chart, every image as an OCI layout, their SBOMs
and a manifest of digests, for a network that reaches nothing but its own registry.

An admin unpacks it and loads each image with a standard tool, by digest
(`skopeo copy oci:images/hub:<tag> docker://registry.internal/sovereign-hub/hub:<tag>`;
`oras cp` works too), pushes the chart (`helm push chart/sovereign-hub-*.tgz
oci://registry.internal/charts`) and installs from there, overriding only the
repositories. `manifest.json` lists every digest, so what was loaded can be checked against
what was built. The archive's members are sorted, with a fixed owner and time.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .build import Artifact


class BundleError(RuntimeError):
    """A bundle or chart step that failed; the message has the tool's own words."""


def package_chart(helm: Path, chart: Path, into: Path) -> Path:
    done = subprocess.run([str(helm), "package", str(chart), "-d", str(into)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise BundleError(f"helm package {chart}: {done.stderr.strip()}")
    (packaged,) = into.glob("*.tgz")
    return packaged


def push_chart(helm: Path, packaged: Path, registry: str, *, plain_http: bool) -> str:
    """`helm push` the packaged chart to oci://registry/charts; returns `ref@digest`."""
    command = [str(helm), "push", str(packaged), f"oci://{registry}/charts"]
    if plain_http:
        command.append("--plain-http")
    done = subprocess.run(command, capture_output=True, text=True)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise BundleError(f"helm push {packaged.name}: {output.strip()}")
    pushed = re.search(r"Pushed:\s*(\S+)", output)
    digest = re.search(r"Digest:\s*(sha256:[0-9a-f]{64})", output)
    if not (pushed and digest):
        raise BundleError(f"helm push {packaged.name}: no digest in its output: {output!r}")
    return f"{pushed.group(1).rsplit(':', 1)[0]}@{digest.group(1)}"


def _add_tree(tar: tarfile.TarFile, source: Path, name: str, epoch: int) -> None:
    paths = [source, *sorted(source.rglob("*"))] if source.is_dir() else [source]
    for path in paths:
        info = tar.gettarinfo(str(path), arcname=f"{name}/{path.relative_to(source)}"
                              if path != source else name)  # fmt: skip
        info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
        info.mode = 0o755 if info.isdir() else 0o644
        if info.isfile():
            with path.open("rb") as stream:
                tar.addfile(info, stream)
        else:
            tar.addfile(info)


def write_bundle(
    artifacts: list[Artifact], *, chart: Path, helm: Path, out: Path, epoch: int
) -> dict[str, object]:
    """Write the bundle archive ``out``; returns its manifest (also inside, manifest.json)."""
    with tempfile.TemporaryDirectory(prefix="sovhub-bundle-") as tmp:
        staging = Path(tmp)
        packaged = package_chart(helm, chart, staging / "chart")
        manifest: dict[str, object] = {
            "chart": {"file": f"chart/{packaged.name}",
                      "sha256": hashlib.sha256(packaged.read_bytes()).hexdigest()},
            "images": {},
        }  # fmt: skip
        images: dict[str, object] = {}
        (staging / "sbom").mkdir()
        for artifact in sorted(artifacts, key=lambda a: a.name):
            shutil.copytree(artifact.layout, staging / "images" / artifact.name)
            shutil.copy2(artifact.sbom, staging / "sbom" / f"{artifact.name}.cdx.json")
            images[artifact.name] = {
                "layout": f"images/{artifact.name}", "tag": artifact.tag,
                "digest": artifact.digest, "sbom": f"sbom/{artifact.name}.cdx.json",
            }  # fmt: skip
        manifest["images"] = images
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in ("manifest.json", "chart", "images", "sbom"):
                _add_tree(tar, staging / name, name, epoch)
    return manifest
