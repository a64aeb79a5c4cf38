"""The process kubelet's pod network: a network namespace per pod, NetworkPolicies as nftables.

Opt-in (``Cluster(pod_network=True)``); it needs root, ``ip netns`` and ``nft``
(Debian ``iproute2`` and ``nftables``). Each cluster gets a "node" network
namespace with a bridge and a /24 of 198.18.0.0/15 (reserved for network
testing) that no route on this machine uses yet. Every pod the kubelet runs
gets its own network namespace with an ``eth0`` on that bridge and an address
of the /24, which the kubelet reports as ``status.podIP``. The machine's own
namespace has one address on the bridge (the /24's ``.254``), so the kubelet's
probes and the tests reach pods, as a node reaches its pods; nothing routes the
/24 further, and pods have no default route, so nothing leaves the machine.

The NetworkPolicies of every namespace are watched; on each change of a
policy, of a networked pod (started, relabelled, gone) or of a namespace's
labels, each pod's egress and ingress are recomputed with Kubernetes'
semantics by :mod:`sovereign_hub.sandbox.netpol` and loaded as an nftables
table inside the pod's namespace (an output and an input chain), replacing
the previous one in one transaction. The pod network fails closed: a pod's
``eth0`` comes up only after a table admitting nothing but its node is loaded
(a pod whose table cannot be loaded does not start), and when a later table
fails to load the pod falls back to that closed table, or loses its link if
even that fails. A connection passes when the sender's
egress and the receiver's ingress both allow it; traffic between a pod and
its node (the ``.254`` address: the kubelet's probes) always passes, as
Kubernetes specifies.

What is not emulated: Services and DNS (pods reach each other by address),
named ports in egress rules (refused by the translator: the pod's table then
denies all its traffic and the reason is logged; in ingress rules they are the
pod's own container ports) and IPv6.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import secrets
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kubernetes_asyncio import client

from sovereign_hub.sandbox.netpol import (
    TABLE,
    Endpoint,
    Namespace,
    NetpolError,
    egress_rules,
    ingress_rules,
    nft_ruleset,
)
from sovereign_hub.sandbox.podnet import IP, unavailable

from .informer import Informer
from .podenv import ConfigError

log = logging.getLogger(__name__)
SPACE = ipaddress.ip_network("198.18.0.0/15")


class PodNetwork(Protocol):
    """What the process kubelet asks of a pod network, in a pod's life's order."""

    isolated: bool
    """Whether each pod has a network namespace (else a wildcard listen address must be
    translated to the pod's own)."""

    def allocate(self) -> str: ...
    async def attach(self, uid: str, pod: Mapping[str, Any], ip: str) -> None: ...
    def wrap(self, uid: str, argv: Sequence[str]) -> list[str]: ...
    def netns(self, uid: str) -> str: ...
    async def relabel(self, uid: str, labels: Mapping[str, str]) -> None: ...
    async def detach(self, uid: str, ip: str) -> None: ...


RESERVATION_PORT = 65535
"""The port a kubelet listens on, on its block's ``.0.255`` (an address it never hands
out), to hold the block: above Linux's ephemeral range (32768-60999), so no client
socket is given it."""


def reserve_block(block: int | None = None) -> tuple[int, socket.socket]:
    """A 127.N.0.0/16 no other kubelet on this machine holds, and the socket that holds it.

    The hold is a listening socket, so the kernel arbitrates between processes and
    frees it when the holder exits, even killed. ``block`` asks for that one only.
    """
    candidates = [block] if block is not None else list(range(2, 252))
    if block is None:
        secrets.SystemRandom().shuffle(candidates)
    last: OSError | None = None
    for n in candidates:
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            holder.bind((f"127.{n}.0.255", RESERVATION_PORT))
            holder.listen(1)
        except OSError as exc:
            holder.close()
            last = exc
            continue
        return n, holder
    # Named, since a wildcard listener on the port (not a kubelet) fails every block alike.
    cause = f"binding 127.N.0.255:{RESERVATION_PORT}: {last}"
    if block is not None:
        raise RuntimeError(
            f"pod addresses 127.{block}.0.0/16 are held by another kubelet on this machine "
            f"({cause})"
        )
    raise RuntimeError(f"every 127.N.0.0/16 (N 2 to 251) is held by another kubelet ({cause})")


class LoopbackAddresses:
    """The default: a loopback address per pod, no namespace and no policy.

    Each kubelet draws from its own 127.N.0.0/16, held for its lifetime by
    :func:`reserve_block`, so two emulated clusters on one machine (a sandbox and
    test runs in several processes) never hand the same address to two pods: a pod
    whose address another cluster's pod listens on could not start, or would
    answer for the other.
    """

    isolated = False

    def __init__(self, first: int = 2, block: int | None = None) -> None:
        self._next = first
        self._free: list[str] = []
        self._block, self._holder = reserve_block(block)

    def allocate(self) -> str:
        if self._free:
            return self._free.pop(0)
        n, self._next = self._next, self._next + 1
        return f"127.{self._block}.{n // 254}.{n % 254 + 1}"

    async def attach(self, uid: str, pod: Mapping[str, Any], ip: str) -> None:
        return None

    def wrap(self, uid: str, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def netns(self, uid: str) -> str:
        raise ConfigError("CreateContainerError", "loopback pods have no network namespace")

    async def relabel(self, uid: str, labels: Mapping[str, str]) -> None:
        return None

    async def detach(self, uid: str, ip: str) -> None:
        self._free.append(ip)

    def close(self) -> None:
        """Give the block back (the kubelet stopped)."""
        self._holder.close()


class PodNetworkUnavailable(RuntimeError):
    """This machine cannot give pods network namespaces; the message says why."""


def _run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def _subnet_lock() -> Iterator[None]:
    """Held while a cluster picks its /24 and routes it, by every process on this machine."""
    path = Path(tempfile.gettempdir()) / "sovereign-hub-podnet.lock"
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def free_subnet(routes: Sequence[str]) -> ipaddress.IPv4Network:
    """A /24 of 198.18.0.0/15 that overlaps no route in ``routes`` (``ip -4 route`` lines)."""
    used = []
    for line in routes:
        dest = line.split(maxsplit=1)[0] if line.strip() else "default"
        if dest != "default":
            used.append(ipaddress.ip_network(dest, strict=False))
    candidates = list(SPACE.subnets(new_prefix=24))[1:]  # .0/24 is sandbox.podnet's
    free = [n for n in candidates if not any(n.overlaps(u) for u in used)]
    if not free:
        raise PodNetworkUnavailable("every /24 of 198.18.0.0/15 is routed on this machine")
    return free[secrets.randbelow(len(free))]


@dataclass
class NetPod:
    namespace: str
    name: str
    netns: str
    ip: str
    labels: dict[str, str] = field(default_factory=dict)
    named_ports: tuple[tuple[str, str, int], ...] = ()
    ruleset: str = ""
    link_down: bool = False  # taken down when not even the closed table could be loaded


class PodNetworking:
    """The network of one cluster's process kubelet; :meth:`close` deletes all of it."""

    isolated = True

    def __init__(self, api: client.ApiClient) -> None:
        if why := unavailable():
            raise PodNetworkUnavailable(
                f"Cluster(pod_network=True) needs network namespaces and nftables: {why}"
            )
        self.core = client.CoreV1Api(api)
        self.id = secrets.token_hex(3)
        self.node = f"shk-{self.id}"
        self.host_link = f"shk{self.id}h"  # 15 characters at most
        self.pods: dict[str, NetPod] = {}
        self._extra: list[str] = []  # addresses some pod answers on, routed from every pod
        self._lock = asyncio.Lock()
        self.policies = Informer(
            client.NetworkingV1Api(api).list_network_policy_for_all_namespaces, self._changed
        )
        self.namespaces = Informer(self.core.list_namespace, self._changed)
        # Chosen and routed under a machine-wide lock: two clusters starting at once (two
        # test workers) would otherwise read the same routes and could take the same /24.
        with _subnet_lock():
            self.subnet = free_subnet(_run(IP, "-4", "route", "show").splitlines())
            self.host_ip = str(self.subnet[254])
            try:
                _run(IP, "netns", "add", self.node)
                _run(IP, "-n", self.node, "link", "add", "br0", "type", "bridge")
                _run(IP, "-n", self.node, "link", "set", "br0", "up")
                _run(IP, "link", "add", self.host_link, "type", "veth",
                     "peer", "name", "up0", "netns", self.node)  # fmt: skip
                _run(IP, "-n", self.node, "link", "set", "up0", "master", "br0", "up")
                _run(IP, "addr", "add", f"{self.host_ip}/24", "dev", self.host_link)
                _run(IP, "link", "set", self.host_link, "up")
            except RuntimeError:
                self.close()
                raise
        # What a pod has until its policies are loaded, and when loading them failed: only
        # its node reaches it and it only its node (fail closed, never unfiltered).
        self.closed = nft_ruleset([], ingress=[], node=(self.host_ip,))
        self._free = [str(self.subnet[i]) for i in range(2, 254)]

    async def run(self) -> None:
        """Watch NetworkPolicies and Namespaces, re-applying the rules on every change."""
        await asyncio.gather(self.policies.run(), self.namespaces.run())

    # -- pods ------------------------------------------------------------------
    def allocate(self) -> str:
        if not self._free:
            raise RuntimeError(f"the pod network {self.subnet} has no free address")
        return self._free.pop(0)

    def release(self, ip: str) -> None:
        self._free.append(ip)

    async def attach(self, uid: str, pod: Mapping[str, Any], ip: str) -> None:
        """Give the pod its namespace with ``ip`` on the bridge, then apply the policies."""
        meta = pod["metadata"]
        netns = f"shk-{self.id}-{len(self.pods)}-{uid[:8]}"
        ports = tuple(
            (port["name"], port.get("protocol", "TCP"), int(port["containerPort"]))
            for container in pod["spec"]["containers"]
            for port in container.get("ports") or []
            if port.get("name")
        )
        labels = dict(meta.get("labels") or {})
        net = NetPod(meta["namespace"], meta["name"], netns, ip, labels, ports)
        try:
            await asyncio.to_thread(self._add_namespace, net)
        except RuntimeError as exc:
            self._delete_namespace(netns)
            raise ConfigError("CreateContainerError", f"pod network: {exc}") from exc
        net.ruleset = self.closed
        self.pods[uid] = net
        await self.apply()

    def _load(self, netns: str, ruleset: str) -> None:
        """Replace the pod's table by ``ruleset`` in one transaction: never a moment unfiltered."""
        script = f"table inet {TABLE}\ndelete table inet {TABLE}\n{ruleset}"
        _run(IP, "netns", "exec", netns, "nft", "-f", "-", stdin=script)

    def _close(self, net: NetPod) -> None:
        """Fail closed after rules failed to load: the closed table, else no link at all."""
        try:
            self._load(net.netns, self.closed)
        except RuntimeError as exc:
            log.error("pod %s/%s: link taken down: %s", net.namespace, net.name, exc)
            _run(IP, "-n", net.netns, "link", "set", "eth0", "down")
            net.link_down = True

    def _add_namespace(self, net: NetPod) -> None:
        peer = f"shk{secrets.token_hex(5)}"  # 13 characters
        _run(IP, "netns", "add", net.netns)
        _run(IP, "-n", net.netns, "link", "add", "eth0", "type", "veth",
             "peer", "name", peer, "netns", self.node)  # fmt: skip
        _run(IP, "-n", self.node, "link", "set", peer, "master", "br0", "up")
        _run(IP, "-n", net.netns, "addr", "add", f"{net.ip}/24", "dev", "eth0")
        # The closed table before the link comes up: a pod whose table cannot be loaded
        # does not start (CreateContainerError) rather than start unfiltered.
        self._load(net.netns, self.closed)
        _run(IP, "-n", net.netns, "link", "set", "eth0", "up")
        _run(IP, "-n", net.netns, "link", "set", "lo", "up")
        for address in self._extra:
            _run(IP, "-n", net.netns, "route", "add", f"{address}/32", "dev", "eth0")

    async def add_address(self, uid: str, address: str) -> None:
        """Let the pod answer on ``address`` too, routed from every pod over the bridge: a
        stand-in for an address outside the pod network (the cloud metadata server, say).
        Policies still see the pod by its podIP; reach ``address`` through ``ipBlock``s."""
        net = self.pods[uid]

        def add() -> None:
            _run(IP, "-n", net.netns, "addr", "add", f"{address}/32", "dev", "eth0")
            for other in self.pods.values():
                if other is not net:
                    _run(IP, "-n", other.netns, "route", "add", f"{address}/32", "dev", "eth0")

        await asyncio.to_thread(add)
        self._extra.append(address)

    async def relabel(self, uid: str, labels: Mapping[str, str]) -> None:
        net = self.pods.get(uid)
        if net is not None and net.labels != labels:
            net.labels = dict(labels)
            await self.apply()

    async def detach(self, uid: str, ip: str) -> None:
        """Delete the pod's namespace and free ``ip`` (also when it was never attached)."""
        net = self.pods.pop(uid, None)
        self.release(ip)
        if net is None:
            return
        await asyncio.to_thread(self._delete_namespace, net.netns)
        await self.apply()

    @staticmethod
    def _delete_namespace(netns: str) -> None:
        subprocess.run([IP, "netns", "del", netns], capture_output=True, timeout=30)  # noqa: S603

    def wrap(self, uid: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the pod's network namespace (``ip netns exec`` then execs it,
        so the process keeps the pid the kubelet signals)."""
        net = self.pods.get(uid)
        return list(argv) if net is None else [IP, "netns", "exec", net.netns, *argv]

    def netns(self, uid: str) -> str:
        """The name of the pod's network namespace (``/var/run/netns/<name>``)."""
        return self.pods[uid].netns

    # -- policies ---------------------------------------------------------------
    async def _changed(self, kind: str, obj: dict[str, Any] | None) -> None:
        await self.apply()

    def rulesets(self) -> dict[str, str]:
        """Each networked pod's nftables script for the policies and pods known now."""
        policies = list(self.policies.items.values())
        namespaces = [
            Namespace(ns["metadata"]["name"], ns["metadata"].get("labels") or {})
            for ns in self.namespaces.items.values()
        ]
        endpoints = {
            uid: Endpoint(net.namespace, net.labels, net.ip, net.named_ports)
            for uid, net in self.pods.items()
        }
        out = {}
        for uid, endpoint in endpoints.items():
            try:
                egress = egress_rules(policies, endpoint, endpoints.values(), namespaces)
                ingress = ingress_rules(policies, endpoint, endpoints.values(), namespaces)
            except NetpolError as exc:
                # Fail closed: a policy that cannot be translated must not open the pod.
                net = self.pods[uid]
                log.warning("pod %s/%s: all traffic denied: %s", net.namespace, net.name, exc)
                egress, ingress = [], []
            out[uid] = nft_ruleset(egress, ingress=ingress, node=(self.host_ip,))
        return out

    async def apply(self) -> None:
        if not (self.policies.synced.is_set() and self.namespaces.synced.is_set()):
            return  # the first list of both applies everything
        async with self._lock:
            for uid, ruleset in self.rulesets().items():
                net = self.pods.get(uid)
                if net is None or net.ruleset == ruleset:
                    continue
                try:
                    await asyncio.to_thread(self._load, net.netns, ruleset)
                except RuntimeError as exc:
                    if uid not in self.pods:
                        continue  # the pod went while its rules were loading
                    log.error("pod %s/%s: rules not loaded, pod closed: %s",
                              net.namespace, net.name, exc)  # fmt: skip
                    with contextlib.suppress(RuntimeError):  # the namespace itself is gone
                        await asyncio.to_thread(self._close, net)
                    net.ruleset = ""  # the next change tries again
                    continue
                net.ruleset = ruleset
                if net.link_down:  # a table loads again: the pod is filtered, bring it back
                    await asyncio.to_thread(_run, IP, "-n", net.netns, "link", "set", "eth0", "up")
                    net.link_down = False

    async def wait_applied(self) -> None:
        """Until the first lists of policies and namespaces are in."""
        await self.policies.synced.wait()
        await self.namespaces.synced.wait()
        await self.apply()

    def close(self) -> None:
        """Delete every pod namespace, the node namespace and the machine's link."""
        for net in list(self.pods.values()):
            self._delete_namespace(net.netns)
        self.pods.clear()
        subprocess.run([IP, "link", "del", self.host_link], capture_output=True, timeout=30)  # noqa: S603
        self._delete_namespace(self.node)
