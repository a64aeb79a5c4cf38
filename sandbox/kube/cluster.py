"""Start the emulated cluster, or attach the local scheduler and kubelet to a real one.

:class:`Cluster` runs in an asyncio loop of its own thread, so synchronous
test fixtures, async tests (in their own loops) and separate processes such as
a JupyterHub can all use it through its kubeconfig.

- Emulated (default): API server on 127.0.0.1 with a random bearer token,
  Node objects from the inventory, scheduler and process kubelet.
- ``kubeconfig=`` a real API server: a fresh namespace, the inventory's
  nodes created there with the namespace as a name prefix, and the local
  scheduler (under a scheduler name of its own, so the cluster's
  kube-scheduler leaves these pods alone) and kubelet running against it.
- ``real_nodes=True`` as well: nothing local runs; the cluster's own
  scheduler and kubelets do the work.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import ssl
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from ..tls import local_certificates
from . import rawapi
from .admission import NOT_READY, UNREACHABLE
from .apiserver import CLUSTER_USER_AGENT, ApiServer
from .inventory import Inventory, node_object
from .kubelet import ProcessKubelet
from .leases import NodeLeases
from .ociruntime import ImageStore, OciRuntime
from .placement import Profile
from .podnet import PodNetworking
from .scheduler import Scheduler

log = logging.getLogger(__name__)
EMULATED_SCHEDULER = "default-scheduler"
LOCAL_SCHEDULER_ON_REAL_API = "sovereign-test-scheduler"
NODE_OWNER_LABEL = "sovereign-hub.io/test-namespace"
"""On a real API server: the test namespace whose run created the node."""


def write_kubeconfig(
    path: Path, server: str, token: str, namespace: str, ca_file: Path | None = None
) -> Path:
    cluster: dict[str, str] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_file.read_bytes()).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sovereign", "cluster": cluster}],
        "users": [{"name": "sovereign-admin", "user": {"token": token}}],
        "contexts": [
            {
                "name": "sovereign",
                "context": {
                    "cluster": "sovereign",
                    "user": "sovereign-admin",
                    "namespace": namespace,
                },
            }
        ],
        "current-context": "sovereign",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path


@dataclass
class Cluster:
    """A running cluster for tests and the sandbox.

    ``nodes`` maps each inventory node name to the Node's name in the cluster
    (they differ only on a real API server, where names carry a prefix).
    """

    inventory: Inventory
    state_dir: Path
    kubeconfig_path: Path | None = None
    real_nodes: bool = False
    namespace: str = "default"
    light_pods: bool = False
    """Run every pod as a minimal single-user server in this process (kube/lightpod.py)."""
    pod_network: bool = False
    """Give each process pod a network namespace and a 198.18.0.0/15 address, with the
    NetworkPolicies as nftables rules (kube/podnet.py). Needs root, ``ip`` and ``nft``:
    :class:`~.podnet.PodNetworkUnavailable` says what is missing."""
    images: Path | None = None
    """A folder of OCI image layouts (``make images`` writes ``.tools/images/oci``): run each
    pod's container from its image with runc, found by digest (kube/ociruntime.py), instead
    of as a local process. Needs ``pod_network``, ``runc`` and ``umoci``."""
    scheduler_profiles: dict[str, Profile] = field(default_factory=dict)
    """Further scheduler profiles the local scheduler serves, by ``schedulerName`` (as a
    KubeSchedulerConfiguration's ``profiles``), beside its own name's default one."""
    kubeconfig: Path = field(init=False)
    server: str = field(init=False, default="")
    emulated: bool = field(init=False, default=True)
    scheduler_name: str = field(init=False, default=EMULATED_SCHEDULER)
    nodes: dict[str, str] = field(init=False, default_factory=dict)
    api: ApiServer | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.emulated = self.kubeconfig_path is None
        if self.images is not None and not self.pod_network:
            # A container has its own network namespace; loopback pods share the host's.
            raise ValueError("Cluster(images=…) runs pods as containers: it needs pod_network=True")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sovereign-kube", daemon=True
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._client: client.ApiClient | None = None
        self.kubelet: ProcessKubelet | None = None
        self.network: PodNetworking | None = None
        self.leases: NodeLeases | None = None
        self._tls_context: ssl.SSLContext | None = None
        self._port = 0

    # -- thread plumbing ---------------------------------------------------
    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Run ``coro`` on the cluster's loop and wait for its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def start(self) -> Cluster:
        self._thread.start()
        try:
            self.call(self._start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            for step in (self._stop, self._unwind):
                try:
                    self.call(step(), timeout=60)
                except Exception:
                    log.exception("the cluster did not stop cleanly")
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()

    async def _unwind(self) -> None:
        """As asyncio.run does: cancel whatever is left and let it finish, on the cluster's own
        loop, so no coroutine is finalised later by the garbage collector on a closed loop."""
        this = asyncio.current_task()
        leftover = [task for task in asyncio.all_tasks() if task is not this]
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.wait(leftover, timeout=10)
        await asyncio.get_running_loop().shutdown_asyncgens()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pod_log(self, namespace: str, name: str, container: str = "") -> str:
        """A pod's log. Pods this cluster's process kubelet runs are read from its files:
        on a real API server, `pods/log` would ask the node's kubelet, and these
        nodes have none. Otherwise through the API, as `kubectl logs` would."""
        if self.kubelet is not None:
            return self.kubelet.read_log(namespace, name, container)

        async def fetch() -> str:
            assert self._client is not None  # noqa: S101
            core = client.CoreV1Api(self._client)
            response = await core.read_namespaced_pod_log(
                name, namespace, container=container or None, _preload_content=False
            )
            return str(await response.text())

        return str(self.call(fetch()))

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The pods of ``namespace`` (the cluster's own by default), as the API server lists
        them: what a check after a run finds left, whatever the hub believes."""

        async def fetch() -> dict[str, Any]:
            assert self._client is not None  # noqa: S101
            core = client.CoreV1Api(self._client)
            return await rawapi.call(core.list_namespaced_pod, namespace or self.namespace)

        return list(self.call(fetch())["items"])

    # -- the cluster -------------------------------------------------------
    async def _start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.emulated:
            token = secrets.token_urlsafe(24)
            self.api = ApiServer(token=token, log_dir=self.state_dir / "logs")
            self._runner = web.AppRunner(self.api.app(), handle_signals=False, shutdown_timeout=0)
            await self._runner.setup()
            # HTTPS, as every real API server: Go clients (kubectl, Helm) send
            # credentials over TLS only.
            tls = local_certificates(self.state_dir / "tls", common_name="emulated Kubernetes CA")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls["cert"], tls["key"])
            self._tls_context = context
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._port = port
            self.server = f"https://127.0.0.1:{port}"
            self.kubeconfig = write_kubeconfig(
                self.state_dir / "kubeconfig", self.server, token, self.namespace, tls["ca"]
            )
        else:
            assert self.kubeconfig_path is not None  # noqa: S101
            self.kubeconfig = self.kubeconfig_path
            self.namespace = f"sovtest-{secrets.token_hex(4)}"
            self.scheduler_name = LOCAL_SCHEDULER_ON_REAL_API
        self._client = await config.new_client_from_config(config_file=str(self.kubeconfig))
        self._client.user_agent = f"{CLUSTER_USER_AGENT}/{self.scheduler_name}"
        if self.emulated:
            _without_environment(self._client)  # a real API server may sit behind a proxy
        core = client.CoreV1Api(self._client)
        if not self.emulated:
            await core.create_namespace({"metadata": {"name": self.namespace}})
        if self.real_nodes:
            return
        prefix = "" if self.emulated else f"{self.namespace}-"
        # Nodes are cluster-scoped: on a shared API server each test run marks its own,
        # and its scheduler sees only those (not nodes an earlier run left behind).
        node_selector = None if self.emulated else f"{NODE_OWNER_LABEL}={self.namespace}"
        for spec in self.inventory.nodes:
            node = node_object(spec)
            name = prefix + spec.name
            node["metadata"]["name"] = name
            node["metadata"]["labels"]["kubernetes.io/hostname"] = name
            if not self.emulated:
                node["metadata"]["labels"][NODE_OWNER_LABEL] = self.namespace
            status = node.pop("status")
            await core.create_node(node)
            # Registered before anything else can fail, so stop() always removes it.
            self.nodes[spec.name] = name
            await core.patch_node_status(
                name, {"status": status}, _content_type="application/merge-patch+json"
            )
        # Heartbeats, as the nodes' kubelets would send them: without them a real
        # cluster's node lifecycle controller takes the nodes for unreachable.
        self.leases = NodeLeases(self._client, self.nodes.values())
        await self.leases.renew_all()
        await self._wait_schedulable(core)
        watch_ns = None if self.emulated else self.namespace
        scheduler = Scheduler(
            self._client,
            namespace=watch_ns,
            scheduler_name=self.scheduler_name,
            node_selector=node_selector,
            profiles=self.scheduler_profiles,
        )
        if self.pod_network:
            # Off the loop: it runs `ip` and may wait for another cluster's subnet lock.
            self.network = await asyncio.to_thread(PodNetworking, self._client)
        self.kubelet = ProcessKubelet(
            self._client,
            nodes=set(self.nodes.values()),
            state_dir=self.state_dir,
            namespace=watch_ns,
            light=self.light_pods,
            network=self.network,
            oci=(
                OciRuntime(ImageStore.from_dir(self.images), self.state_dir / "images")
                if self.images is not None
                else None
            ),
        )
        if self.api is not None:
            # pods/exec reaches the pod's kubelet, as a real API server proxies it there.
            self.api.exec_runner = self.kubelet.exec_in
        self._tasks = [
            asyncio.create_task(scheduler.run()),
            asyncio.create_task(self.kubelet.run()),
            asyncio.create_task(self.leases.run()),
        ]
        if self.network is not None:
            self._tasks.append(asyncio.create_task(self.network.run()))
            await self.network.wait_applied()
        await scheduler.nodes.synced.wait()
        await self.kubelet.informer.synced.wait()

    def restart_api_server(self, down_for: float) -> None:
        """Stop the emulated API server, keep it down ``down_for`` seconds, start it again.

        What a kube-apiserver restart does to clients: every open connection is
        dropped at once (a request in flight gets no answer, though its write may
        have landed) and every watch ends (clients must relist or rewatch), requests
        meanwhile are refused, and the state survives, as etcd keeps it (the
        :class:`Store` is kept). The same port is bound again, so kubeconfigs stay
        valid. Emulated clusters only: a real API server is not ours to restart.
        """
        if not self.emulated or self.api is None:
            raise RuntimeError("restart_api_server needs the emulated API server")
        self.call(self._restart_api_server(down_for), timeout=down_for + 90)

    async def _restart_api_server(self, down_for: float) -> None:
        assert self._runner is not None  # noqa: S101
        assert self.api is not None  # noqa: S101
        # A kube-apiserver that dies drops every connection at once: a request in flight gets
        # no answer, even one whose write already reached etcd (the client cannot tell whether
        # it landed), and there is no TLS goodbye. aiohttp's cleanup() alone is gentler: with
        # shutdown_timeout=0 it waits, without limit, for every handler to answer. So the open
        # connections are aborted first (nothing else runs on this loop before the listening
        # socket closes, at the start of cleanup()); cleanup() then runs the app's on_shutdown
        # (ends every watch, stops the control plane's controllers).
        server = self._runner.server
        for handler in server.connections if server is not None else []:
            if handler.transport is not None:
                handler.transport.abort()
        await self._runner.cleanup()
        await asyncio.sleep(down_for)
        self._runner = web.AppRunner(self.api.app(), handle_signals=False, shutdown_timeout=0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port, ssl_context=self._tls_context)
        await site.start()

    async def _wait_schedulable(self, core: client.CoreV1Api, timeout: float = 90.0) -> None:
        """Wait until the node lifecycle controller has lifted the not-ready taint that every
        new Node gets (the emulated control plane's, or a real cluster's controller manager,
        which looks every 5 s)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            tainted = []
            for name in self.nodes.values():
                node = await rawapi.call(core.read_node, name)
                if any(
                    t.get("key") in (NOT_READY, UNREACHABLE) and t.get("effect") == "NoSchedule"
                    for t in node.get("spec", {}).get("taints") or []
                ):
                    tainted.append(name)
            if not tainted:
                return
            if loop.time() > deadline:
                raise RuntimeError(
                    f"nodes {', '.join(tainted)} are still tainted {NOT_READY} after "
                    f"{timeout:.0f} s: the cluster's node lifecycle controller "
                    "(kube-controller-manager) did not take them for Ready"
                )
            await asyncio.sleep(0.1)

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=15)
            if stuck:
                log.warning("still running 15 s after cancel: %s", [t.get_coro() for t in stuck])
        if self.kubelet is not None:
            await self.kubelet.shutdown()
        if self.network is not None:
            await asyncio.to_thread(self.network.close)
            self.network = None
        if self._client is not None and not self.emulated:
            core = client.CoreV1Api(self._client)
            with contextlib.suppress(ApiException):
                await core.delete_namespace(self.namespace)
            if self.leases is not None:
                await self.leases.delete()
            for name in self.nodes.values():
                with contextlib.suppress(ApiException):
                    await core.delete_node(name)
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()


def _without_environment(api: client.ApiClient) -> None:
    """The cluster's own components (kubelet, scheduler, leases) ask their API server on
    loopback: no proxy and no ``.netrc`` apply. kubernetes_asyncio's session trusts the
    environment, and aiohttp then looks ``.netrc`` up in a worker thread for every request:
    a tenth of the cluster thread's time under a thousand pods. The session is replaced by
    one that does not, on the same connector (``detach`` leaves the connector open)."""
    rest = api.rest_client
    old = rest.pool_manager
    rest.pool_manager = aiohttp.ClientSession(
        connector=old.connector, trust_env=False, read_bufsize=2**21
    )
    old.detach()
