"""Pods on a network of their own: network namespaces, veth pairs and nftables egress.

A :class:`PodNetwork` makes a "node" network namespace holding a bridge, and
one network namespace per pod, each with an ``eth0`` veth whose peer is on
the bridge: pods reach each other by address, as on a cluster's pod network,
and nothing is routed to or from the machine's own namespace. Addresses come
from 198.18.0.0/15 (reserved for network testing). Names resolve through
``/etc/netns/<namespace>/hosts``, which ``ip netns exec`` mounts over
``/etc/hosts`` inside the namespace, so a Service name can resolve to an
address that is not the pod's, as a ClusterIP does.

Egress is enforced by nftables rules from :mod:`sovereign_hub.sandbox.netpol`
(the rendered NetworkPolicies), loaded inside the pod's namespace.

What is not emulated: Services as load balancers (a name resolves to one
address; nothing translates a ClusterIP to the pod), ingress policies, and
DNS servers. Needs root (``ip netns`` and ``nft``, Debian ``iproute2`` and
``nftables``); :func:`unavailable` says why not when it cannot run.
Every namespace, link and hosts file is deleted by :meth:`PodNetwork.close`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sovereign_hub.processes import stop_process

NETWORK = ipaddress.ip_network("198.18.0.0/24")
NETNS_ETC = Path("/etc/netns")
IP = shutil.which("ip") or "/usr/sbin/ip"  # Debian's iproute2


def unavailable() -> str:
    """Why pod networks cannot be made here, or empty when they can."""
    if os.geteuid() != 0:
        return "pod networks need root (ip netns, nft)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is missing: install Debian's iproute2 and nftables (make system)"
    return ""


def _run(*argv: str, stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


@dataclass
class Pod:
    name: str
    netns: str
    ip: str
    processes: list[subprocess.Popen] = field(default_factory=list)


class PodNetwork:
    """A bridge in a node namespace and pods in their own namespaces; a context manager."""

    def __init__(self) -> None:
        if why := unavailable():
            raise RuntimeError(why)
        self.id = secrets.token_hex(3)
        self.node = f"shn-{self.id}"
        self.pods: dict[str, Pod] = {}
        self._next = 2
        self._extra: list[str] = []  # extra addresses, routed from every pod
        _run("ip", "netns", "add", self.node)
        _run("ip", "-n", self.node, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.node, "link", "set", "br0", "up")

    def __enter__(self) -> PodNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_pod(
        self,
        name: str,
        hosts: Mapping[str, str] | None = None,
        ip: str | None = None,
        extra_addresses: Sequence[str] = (),
    ) -> Pod:
        """A pod with ``ip`` (else the next free address of 198.18.0.0/24).

        ``hosts`` maps names to addresses for it; ``extra_addresses`` are
        more addresses it answers on (a stand-in for the cloud metadata
        server, say), reached from the other pods over the bridge.
        """
        index = len(self.pods)
        netns = f"shp-{self.id}-{index}"
        if ip is None:
            ip = str(NETWORK[self._next])
            self._next += 1
        elif ipaddress.ip_address(ip) not in NETWORK:
            raise ValueError(f"pod {name}: {ip} is not in {NETWORK}")
        pod = Pod(name, netns, ip)
        self.pods[name] = pod
        _run("ip", "netns", "add", netns)
        peer = f"sh{self.id}p{index}"  # 15 characters at most
        _run("ip", "-n", netns, "link", "add", "eth0", "type", "veth",
             "peer", "name", peer, "netns", self.node)  # fmt: skip
        _run("ip", "-n", self.node, "link", "set", peer, "master", "br0", "up")
        _run("ip", "-n", netns, "addr", "add", f"{ip}/{NETWORK.prefixlen}", "dev", "eth0")
        _run("ip", "-n", netns, "link", "set", "eth0", "up")
        _run("ip", "-n", netns, "link", "set", "lo", "up")
        for address in self._extra:  # on the bridge: no router, a direct route
            _run("ip", "-n", netns, "route", "add", f"{address}/32", "dev", "eth0")
        for address in extra_addresses:
            _run("ip", "-n", netns, "addr", "add", f"{address}/32", "dev", "eth0")
            for other in self.pods.values():
                if other.netns != netns:
                    _run("ip", "-n", other.netns, "route", "add", f"{address}/32", "dev", "eth0")
            self._extra.append(address)
        etc = NETNS_ETC / netns
        etc.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", f"{ip} {name}"]
        lines += [f"{address} {host}" for host, address in (hosts or {}).items()]
        (etc / "hosts").write_text("\n".join(lines) + "\n")
        return pod

    def enforce(self, pod: Pod, ruleset: str) -> None:
        """Load an nftables script (:func:`netpol.nft_ruleset`) in the pod's namespace."""
        _run("ip", "netns", "exec", pod.netns, "nft", "-f", "-", stdin=ruleset)

    def popen(self, pod: Pod, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start a process in the pod's network namespace; stopped by :meth:`close`."""
        process = subprocess.Popen([IP, "netns", "exec", pod.netns, *argv], **kwargs)  # noqa: S603
        pod.processes.append(process)
        return process

    def run(
        self, pod: Pod, argv: Sequence[str], timeout: float = 30
    ) -> subprocess.CompletedProcess:
        return subprocess.run(  # noqa: S603
            [IP, "netns", "exec", pod.netns, *argv],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def close(self) -> None:
        """Stop every process, then delete every namespace (their links go with them)."""
        for pod in self.pods.values():
            for process in pod.processes:
                stop_process(process, timeout=10)
        for netns in [p.netns for p in self.pods.values()] + [self.node]:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)  # noqa: S603, S607
            shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)
        self.pods.clear()
        with contextlib.suppress(OSError):  # /etc/netns itself, if nothing else uses it
            NETNS_ETC.rmdir()
