"""The gateway's API client from its ServiceAccount, as a pod in the cluster has it.

kubernetes_asyncio's in-cluster loader does the reading and checking: the API
server's address from ``KUBERNETES_SERVICE_HOST`` and ``KUBERNETES_SERVICE_PORT``
(which the kubelet sets in every container), the token and the cluster's CA
from the ServiceAccount folder the kubelet mounts
(``/var/run/secrets/kubernetes.io/serviceaccount``). Both are parameters here,
so tests point them at an emulated API server and a temporary folder.

The token is a projected one: the kubelet writes a new one before the old
expires (at 80% of its life, an hour by default) by swapping the file. The
loader's own refresh re-reads it once a minute; this one re-reads it on the
first request after the file changed (a ``stat`` per request, cheap), so a
rotated token is in use at once, and an unchanged one is never read again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where the kubelet mounts a pod's ServiceAccount token, CA and namespace."""


class TokenFile:
    """A ``Configuration.refresh_api_key_hook`` keeping the bearer token equal to a file's
    content: read again when the file's (inode, mtime, size) changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: tuple[int, int, int] | None = None

    def __call__(self, configuration: Configuration) -> None:
        info = os.stat(self.path)
        stat = (info.st_ino, info.st_mtime_ns, info.st_size)
        if stat == self.seen:
            return
        token = self.path.read_text().strip()
        if not token:  # a swap caught half-way: keep the token in use, look again next time
            return
        configuration.api_key["BearerToken"] = f"Bearer {token}"
        self.seen = stat


def incluster_client(
    directory: str = SERVICEACCOUNT_DIR, environ: Mapping[str, str] = os.environ
) -> ApiClient:
    """An API client for the cluster the gateway runs in, authenticated by the ServiceAccount
    token in ``directory``, at the address ``environ`` gives. Raises
    ``kubernetes_asyncio.config.ConfigException`` naming what is missing."""
    folder = Path(directory)
    configuration = Configuration()
    InClusterConfigLoader(
        token_filename=str(folder / "token"),
        cert_filename=str(folder / "ca.crt"),
        try_refresh_token=False,
        environ=dict(environ),
    ).load_and_set(configuration)
    refresh = TokenFile(folder / "token")
    refresh(configuration)
    configuration.refresh_api_key_hook = refresh
    return ApiClient(configuration=configuration)
