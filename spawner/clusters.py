"""Each region's own Kubernetes cluster, behind KubeSpawner's own code paths.

KubeSpawner talks to one API server through two things only: ``self.api``
(a ``CoreV1Api`` on the process-wide default configuration) for the pod,
claim and secret it creates, reads and deletes; and reflectors (pods,
events) shared by all spawners of the class under a key of (kind,
namespace). :class:`RegionalClusters` changes exactly those two things for
a region whose policy names a cluster, before KubeSpawner's ``start``,
``poll`` or ``stop`` runs:

- ``self.api`` becomes a client of that cluster's API server, built from
  its kubeconfig (:func:`kubernetes_asyncio.config.new_client_from_config`,
  one client per kubeconfig and event loop);
- the reflector key gains the cluster's name, so each cluster has its own
  pod and event reflectors, started by KubeSpawner's ``_start_reflector``
  with a subclass of its own reflector class that lists and watches through
  that cluster's client.

A cluster with a gateway (``cluster.gateway``) also changes the server's URL
(KubeSpawner's ``_get_pod_url``): the hub's proxy reaches the pod through the
gateway, not at its IP.

Nothing else is copied from KubeSpawner. A region with no cluster keeps
KubeSpawner's behaviour exactly (its shared client, its reflector keys).
Pins, GPU quotas and the GPU ledger are the hub's, not a cluster's: they
stay global.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import kubernetes_asyncio.client
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubespawner.clients import shared_client
from traitlets import Float, Unicode
from traitlets.config import Configurable

from sovereign_hub.policy import HUB_CLUSTER, Cluster, Policy
from sovereign_hub.refusals import SpawnRefused

from .transient import ApiUnavailable, is_transient

log = logging.getLogger(__name__)


@dataclass
class _Cached:
    client: ApiClient
    stat: tuple[int, int, int]
    """The kubeconfig file's (inode, mtime, size) when it was last read."""
    digest: bytes
    """The SHA-256 of its content then."""


_CLIENTS: dict[tuple[asyncio.AbstractEventLoop, str], _Cached] = {}
_CREDENTIALS = ("api_key", "api_key_prefix", "refresh_api_key_hook", "username", "password")
"""What a rotated kubeconfig changes in place on the live client."""


def cluster_of(policy: Policy, region: str | None) -> str | None:
    """The cluster name ``region`` runs in, or None when no such region is chosen."""
    spec = policy.regions.get(region) if region else None
    return spec.cluster_name if spec else None


def kubeconfig_path(cluster: Cluster, secrets_dir: str) -> str | None:
    """Where the hub reads ``cluster``'s kubeconfig: its own path, or the mounted Secret key
    (the chart mounts Secret ``name`` at ``<secrets_dir>/<name>/``); None for a cluster
    reached with a token Secret."""
    ref = cluster.kubeconfig_secret
    if ref is not None:
        return os.path.join(secrets_dir, ref.name, ref.key)
    return cluster.kubeconfig


def token_paths(cluster: Cluster, secrets_dir: str) -> tuple[str, str | None]:
    """Where the hub reads a token cluster's bearer token and CA certificate (None: the
    system's CAs), in its mounted Secret."""
    ref = cluster.token_secret
    if ref is None:
        raise ValueError(f"cluster {cluster.name!r} names no tokenSecret")
    folder = os.path.join(secrets_dir, ref.name)
    return os.path.join(folder, ref.token_key), (
        os.path.join(folder, ref.ca_key) if ref.ca_key else None
    )


async def cluster_client(cluster: Cluster, secrets_dir: str) -> ApiClient:
    """The API client for ``cluster``, by whichever way the policy reaches it."""
    path = kubeconfig_path(cluster, secrets_dir)
    if path is not None:
        return await api_client(path)
    token, ca = token_paths(cluster, secrets_dir)
    return token_client(str(cluster.server), token, ca)


def _file_stat(path: str) -> tuple[int, int, int]:
    """A file's (inode, mtime, size): cheap, and a Secret volume's update swaps the file."""
    info = os.stat(path)
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _changed(cached: _Cached | None, path: str) -> tuple[tuple[int, int, int], bytes] | None:
    """The file's stat and content digest when it differs from what ``cached`` was built
    from (or nothing is cached); None when it does not (a new stat with the same content is
    remembered, so the content is not read again)."""
    stat = _file_stat(path)
    if cached is not None and cached.stat == stat:
        return None
    digest = hashlib.sha256(Path(path).read_bytes()).digest()
    if cached is not None and cached.digest == digest:
        cached.stat = stat
        return None
    return stat, digest


class _TokenFile:
    """Keeps a client's bearer token equal to a file's content, as the file is rotated.

    ``Configuration.refresh_api_key_hook`` is called before every request; a stat of
    the file (a Secret volume swaps it when the Secret changes) decides whether to
    read it again.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.stat: tuple[int, int, int] | None = None

    def __call__(self, configuration: Configuration) -> None:
        stat = _file_stat(self.path)
        if stat == self.stat:
            return
        token = Path(self.path).read_text().strip()
        if not token:
            raise ValueError(f"the token file {self.path} is empty")
        configuration.api_key["BearerToken"] = f"Bearer {token}"
        self.stat = stat


_TOKEN_CLIENTS: dict[tuple[asyncio.AbstractEventLoop, str, str, str | None], _Cached] = {}


def token_client(server: str, token_path: str, ca_path: str | None) -> ApiClient:
    """One API client per (server, token file, CA file) and event loop.

    The token is re-read when its file changes, so a rotated token needs no
    restart. A changed CA needs new connections: a new client serves later
    spawns and polls, and the region's watches move to it at the next of them,
    as for a kubeconfig naming new TLS material.
    """
    key = (asyncio.get_running_loop(), server, token_path, ca_path)
    cached = _TOKEN_CLIENTS.get(key)
    if ca_path is None:  # the system's CAs: nothing to follow
        if cached is not None:
            return cached.client
        stat, digest = (0, 0, 0), b""
    else:
        changed = _changed(cached, ca_path)
        if changed is None:
            assert cached is not None  # noqa: S101 - _changed says so
            return cached.client
        stat, digest = changed
    if cached is not None:
        log.warning(
            "the CA of cluster %s changed: new requests use it; its watches move to it at the "
            "region's next spawn or poll",
            server,
        )
    configuration = Configuration(host=server)
    configuration.ssl_ca_cert = ca_path  # None: the system's CAs
    refresh = _TokenFile(token_path)
    refresh(configuration)  # now, so a missing or empty token fails this spawn's probe
    configuration.refresh_api_key_hook = refresh
    client = ApiClient(configuration=configuration)
    _TOKEN_CLIENTS[key] = _Cached(client, stat, digest)
    return client


async def api_client(path: str) -> ApiClient:
    """One API client per kubeconfig file and event loop (the hub has one loop), following the
    file when it changes.

    A Secret volume is updated in place when the Secret is (a rotated token, a
    renewed certificate). New credentials are put into the live client's
    configuration, which every holder of the client reads on each request (the
    region's reflectors included), so they need no restart. A new server
    address or TLS material needs new connections: a new client serves later
    spawns and polls, and the region's reflectors are replaced by ones on the
    new client at the next of them (``RegionalClusters._start_reflector``).
    """
    key = (asyncio.get_running_loop(), path)
    cached = _CLIENTS.get(key)
    changed = _changed(cached, path)
    if changed is None:
        assert cached is not None  # noqa: S101 - _changed says so
        return cached.client
    stat, digest = changed
    fresh = Configuration()
    await kube_config.load_kube_config(
        config_file=path, client_configuration=fresh, persist_config=False
    )
    if cached is not None and _same_endpoint(cached.client.configuration, fresh):
        live = cached.client.configuration
        for name in _CREDENTIALS:
            setattr(live, name, getattr(fresh, name))
        log.info("kubeconfig %s changed: new credentials in use", path)
        cached.stat, cached.digest = stat, digest
        return cached.client
    if cached is not None:
        log.warning(
            "kubeconfig %s names another server or TLS material: new requests use it; "
            "its watches move at the region's next spawn or poll",
            path,
        )
    client = ApiClient(configuration=fresh)
    _CLIENTS[key] = _Cached(client, stat, digest)
    return client


def _same_endpoint(old: Configuration, new: Configuration) -> bool:
    """The same server, trusted and reached with the same TLS material (compared by content:
    the loader writes embedded certificates to new temporary files on each load)."""

    def material(conf: Configuration) -> tuple[Any, ...]:
        files = []
        for name in ("ssl_ca_cert", "cert_file", "key_file"):
            path = getattr(conf, name)
            content: bytes | str | None = path
            with contextlib.suppress(OSError, TypeError):
                content = Path(path).read_bytes()
            files.append(content)
        return (conf.host, conf.verify_ssl, conf.tls_server_name, *files)

    return material(old) == material(new)


@functools.cache
def regional_reflector(reflector_class: type[Any]) -> type:
    """``reflector_class`` listing and watching through a given cluster's client.

    KubeSpawner's reflectors take their client from the process-wide default
    configuration in ``__init__``; this subclass replaces it, and nothing else.
    """

    def __init__(self: Any, *args: Any, cluster_client: ApiClient, **kwargs: Any) -> None:
        reflector_class.__init__(self, *args, **kwargs)
        self.api = getattr(kubernetes_asyncio.client, self.api_group_name)(cluster_client)

    return type(f"Regional{reflector_class.__name__}", (reflector_class,), {"__init__": __init__})


class RegionalClusters(Configurable):
    """Mixin for a KubeSpawner subclass: use the cluster of the server's region."""

    cluster_secrets_dir = Unicode(
        "/etc/sovereign-hub/clusters",
        config=True,
        help="""Folder where the chart mounts the Secrets that policy regions name in
        `cluster.kubeconfigSecret`: Secret `name`'s key `key` is read from
        `<cluster_secrets_dir>/<name>/<key>`. Unused when no region names a Secret.""",
    )
    cluster_probe_timeout = Float(
        5.0,
        config=True,
        help="""Seconds a spawn waits for a region's own cluster to answer before it is
        refused with a message naming the region (default 5). Regions on the hub's own
        cluster are not probed.""",
    )

    api: Any
    namespace: str
    log: Any
    if TYPE_CHECKING:
        # What else it uses of the spawner it is mixed into: KubeSpawner's and SovereignSpawner's.
        reflectors: ClassVar[dict[tuple[Any, ...], Any]]

        def policy(self) -> Policy: ...

    _cluster: Cluster | None = None
    _cluster_client: ApiClient | None = None

    @property
    def cluster_name(self) -> str:
        """The name of the cluster this spawner's server is (or will be) in."""
        return self._cluster.name if self._cluster else HUB_CLUSTER

    async def use_cluster(self, region: str, cluster: Cluster | None, *, probe: bool) -> None:
        """Direct ``self.api`` and the reflectors to ``region``'s cluster.

        With ``probe``, ask the cluster's API server first and refuse (503) with a
        message naming the region when it cannot be reached within
        ``cluster_probe_timeout``: a spawn fails fast instead of waiting out
        KubeSpawner's retries, and other regions are not held up.
        """
        if cluster is None:
            self._cluster, self._cluster_client = None, None
            self.api = shared_client("CoreV1Api")
            return
        try:
            client = await cluster_client(cluster, self.cluster_secrets_dir)
            if probe:
                async with asyncio.timeout(self.cluster_probe_timeout):
                    await CoreV1Api(client).list_namespaced_pod(self.namespace, limit=1)
        except Exception as exc:
            # The exception's type says enough (refused, timeout, unreadable kubeconfig);
            # its text may carry a server address, which users need not see.
            self.log.warning(
                "region %s: cluster %s unreachable: %r", region, cluster.name, exc, exc_info=True
            )
            raise SpawnRefused(
                503,
                f"Region {region!r} cannot start servers right now: its cluster "
                f"{cluster.name!r} did not answer ({type(exc).__name__}). Servers in other "
                "regions are not affected; try again later or choose another region.",
            ) from None
        self._cluster, self._cluster_client = cluster, client
        self.api = CoreV1Api(client)

    async def get_pod_manifest(self) -> Any:
        # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
        pod = await super().get_pod_manifest()  # type: ignore[misc]
        if self._cluster is not None:
            # The hub cluster's user scheduler and PriorityClass exist only there: in another
            # cluster a pod naming an unknown PriorityClass is refused at admission, and one
            # naming a scheduler that does not run there stays Pending for good.
            pod.spec.scheduler_name = self._cluster.scheduler_name
            pod.spec.priority_class_name = self._cluster.priority_class_name
        return pod

    async def _follow_allocation(self) -> None:
        """Before KubeSpawner polls or stops a server, face the cluster it was started in
        (after a hub restart the spawner starts on the hub's own)."""
        allocation = getattr(self, "allocation", None)
        if allocation is None or allocation.cluster == self.cluster_name:
            return
        try:
            regions = self.policy().regions.values()
        except Exception:
            self.log.exception("cannot read the policy to find cluster %s", allocation.cluster)
            return
        clusters = [r.cluster for r in regions if r.cluster_name == allocation.cluster]
        if not clusters:
            self.log.error(
                "cluster %s of a running server is no longer in the policy", allocation.cluster
            )
            return
        await self.use_cluster(allocation.region, clusters[0], probe=False)

    async def poll(self) -> int | None:
        await self._follow_allocation()
        try:
            # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
            return await super().poll()  # type: ignore[misc, no-any-return]
        except Exception as exc:
            if not (isinstance(exc, ApiUnavailable) or is_transient(exc)):
                raise
            # Unknown is not stopped: JupyterHub takes a failed poll for a dead server (at
            # start-up it then forgets it), which would leave a running pod and its GPUs in a
            # cluster that is only out of reach. The next poll asks again.
            self.log.warning(
                "cluster %s does not answer (%s): %s's server is taken as running until it does",
                self.cluster_name, type(exc).__name__, getattr(self, "_log_name", "a user"),
            )  # fmt: skip
            return None

    async def stop(self, now: bool = False) -> None:
        await self._follow_allocation()
        # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
        await super().stop(now=now)  # type: ignore[misc]

    # -- KubeSpawner's seams --------------------------------------------------
    def _get_pod_url(self, pod: Any) -> str:
        # A gateway serves every server of its cluster under the same URL; JupyterHub appends
        # the server's own path (/user/<name>/), by which the gateway picks the pod.
        gateway = self._cluster.gateway if self._cluster else None
        if gateway is not None:
            return gateway.url
        # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
        return super()._get_pod_url(pod)  # type: ignore[misc, no-any-return]

    def _get_reflector_key(self, kind: str) -> tuple[Any, ...]:
        # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
        key = tuple(super()._get_reflector_key(kind))  # type: ignore[misc]
        return key if self._cluster is None else (*key, self._cluster.name)

    async def _start_reflector(
        self, kind: str, reflector_class: type, replace: bool = False, **kwargs: Any
    ) -> Any:
        if self._cluster_client is not None:
            reflector_class = regional_reflector(reflector_class)
            kwargs["cluster_client"] = self._cluster_client
            current = type(self).reflectors.get(self._get_reflector_key(kind))
            if current is not None and current.api.api_client is not self._cluster_client:
                # The region's kubeconfig now names another server (or CA): watch there.
                self.log.info("cluster %s moved: restarting its %s watch", self.cluster_name, kind)
                replace = True
        # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
        return await super()._start_reflector(  # type: ignore[misc]
            kind, reflector_class, replace=replace, **kwargs
        )
