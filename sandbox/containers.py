"""The sandbox with notebook pods run as containers from the built images (``--runtime oci``).

By default the sandbox's kubelet runs a pod as a local process from this
checkout's notebook environment. With ``--runtime oci`` it runs each pod from
its image with runc, in a network namespace and address of its own
(kube/ociruntime.py, kube/podnet.py): what a user sees in JupyterLab (uid
1000, the image's files and environment, the home volume, no capabilities) is
what the image gives on a cluster. The images are the ones ``make images``
built (``.tools/images/oci``); the policy the hub reads is a copy of the given
one in which ``notebook-cpu`` (and ``notebook-gpu``, when built) is the newest
version of its channel, as ``make release`` pins them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sovereign_hub.images.pin import PinError
from sovereign_hub.images.release import notebook_channels, pin_notebooks
from sovereign_hub.policy import PolicyError

from .kube.ociruntime import ImageStore
from .podnet import unavailable

#: The repository the sandbox names its images by; the kubelet finds them by digest alone.
REPOSITORY = "localhost/sovereign-hub"
SANDBOX_VERSION = "sandbox"


class RuntimeUnavailable(RuntimeError):
    """``--runtime oci`` cannot run here; the message says what is missing and how to get it."""


def check_oci(images: Path) -> ImageStore:
    """The built images, or why containers cannot run here."""
    if why := unavailable():
        raise RuntimeUnavailable(
            f"--runtime oci gives each pod a network namespace: {why} (make system)"
        )
    for tool in ("runc", "umoci"):
        if shutil.which(tool) is None:
            raise RuntimeUnavailable(f"--runtime oci needs {tool} (apt-get install {tool})")
    try:
        store = ImageStore.from_dir(images)
    except ValueError as exc:
        raise RuntimeUnavailable(f"--images: {exc}") from None
    if "notebook-cpu" not in store.by_name:
        raise RuntimeUnavailable(
            f"--images: {images} has no notebook-cpu image (build it: make images)"
        )
    return store


def policy_with_images(
    source: Path, store: ImageStore, out: Path, channel: str = "datascience",
    gpu_channel: str = "pytorch",
) -> Path:  # fmt: skip
    """``source`` with the built notebook images as version ``sandbox`` of their channels,
    written to ``out`` (the policy's own validation applies, as for a release)."""
    refs = {
        name: f"{REPOSITORY}/{name}@{image.digest}"
        for name, image in store.by_name.items()
        if name in ("notebook-cpu", "notebook-gpu")
    }
    try:
        text = pin_notebooks(
            source.read_text(), str(source), refs, notebook_channels(channel, gpu_channel),
            SANDBOX_VERSION,
        )  # fmt: skip
    except (PinError, PolicyError) as exc:
        raise RuntimeUnavailable(f"--runtime oci: cannot pin the built images: {exc}") from None
    out.write_text(f"# {source} with the images built here (written by the sandbox)\n" + text)
    return out


def hub_config(host_ip: str) -> str:
    """Config lines for a hub whose servers run in pod network namespaces: the hub listens
    on the node's address on the pod network, and the notebook command is the image's."""
    return (
        f"\nc.JupyterHub.hub_ip = {host_ip!r}\n"
        f"c.JupyterHub.hub_connect_ip = {host_ip!r}\n"
        'c.SovereignSpawner.cmd = ["jupyterhub-singleuser"]\n'
        "c.SovereignSpawner.args = []\n"
    )
