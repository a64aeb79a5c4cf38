"""Node heartbeats: the Lease each node's kubelet renews in ``kube-node-lease``.

On a real cluster the node lifecycle controller takes a node whose Lease has
not been renewed within its grace period (40 s by default) for unreachable,
taints it and, after five minutes, evicts its pods. The local kubelet stands
in for the kubelets of the emulated nodes, so it renews their Leases as a
kubelet does: created with the Node as owner (the garbage collector deletes
it with the Node), ``leaseDurationSeconds`` 40, renewed every quarter of
that, with an update that carries the read ``resourceVersion``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from . import rawapi

log = logging.getLogger(__name__)
NAMESPACE = "kube-node-lease"
DURATION_SECONDS = 40


def micro_time(moment: datetime | None = None) -> str:
    """``metav1.MicroTime`` as the API server parses it: RFC 3339 with six fraction digits."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeLeases:
    """Keeps one Lease per node renewed until cancelled."""

    def __init__(
        self,
        api: client.ApiClient,
        nodes: Iterable[str],
        *,
        duration_seconds: int = DURATION_SECONDS,
        renew_seconds: float | None = None,
    ) -> None:
        self.coordination = client.CoordinationV1Api(api)
        self.core = client.CoreV1Api(api)
        self.nodes = tuple(nodes)
        self.duration_seconds = duration_seconds
        self.renew_seconds = duration_seconds / 4 if renew_seconds is None else renew_seconds

    async def run(self) -> None:
        """Renew every ``renew_seconds`` (call :meth:`renew_all` first for Leases right away)."""
        while True:
            await asyncio.sleep(self.renew_seconds)
            await self.renew_all()

    async def renew_all(self) -> None:
        for node in self.nodes:
            try:
                await self.renew(node)
            except ApiException as exc:
                # A kubelet retries on its next tick; so does this one.
                log.warning("renewing the lease of node %s failed: %s", node, exc.reason)

    async def renew(self, node: str) -> None:
        try:
            lease = await rawapi.call(self.coordination.read_namespaced_lease, node, NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise
            await rawapi.call(
                self.coordination.create_namespaced_lease, NAMESPACE, await self._new(node)
            )
            return
        lease.setdefault("spec", {}).update(
            holderIdentity=node,
            leaseDurationSeconds=self.duration_seconds,
            renewTime=micro_time(),
        )
        await rawapi.call(self.coordination.replace_namespaced_lease, node, NAMESPACE, lease)

    async def _new(self, node: str) -> dict[str, Any]:
        owner = await rawapi.call(self.core.read_node, node)
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": node,
                "namespace": NAMESPACE,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "name": node,
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            },
            "spec": {
                "holderIdentity": node,
                "leaseDurationSeconds": self.duration_seconds,
                "renewTime": micro_time(),
            },
        }

    async def delete(self) -> None:
        """Remove the Leases (on a real cluster the garbage collector would, with the Nodes)."""
        for node in self.nodes:
            with contextlib.suppress(ApiException):
                await self.coordination.delete_namespaced_lease(node, NAMESPACE)
