"""The GPU queue's view of every cluster the policy's regions run in.

The queue (:mod:`.waiting`) judges free GPUs from Node objects and the pods
that hold GPUs on them. With regions in clusters of their own, the GPU nodes of
a region are in that region's cluster: :class:`ClusterView` lists the nodes of
each cluster, and :func:`pods_everywhere` takes the pods of each cluster's pod
reflector. Node names are only unique within a cluster, so those of a region's
own cluster are prefixed with the cluster's name (``us-east/gpu-1``), in the
nodes and in the pods bound to them alike; the objects the reflectors hold are
never changed.

KubeSpawner's pod reflector watches the hub's user pods only
(``component=singleuser-server``), so it never shows the chart's placeholder
pods. The view therefore lists them too, in each cluster, by their own label
(:data:`PLACEHOLDER_SELECTOR`), in the same namespace as the user pods: without
them a GPU a placeholder holds would look free to every user, whatever their
priority.

A cluster that does not answer keeps its last good listing (nodes and
placeholders), so an outage neither frees nor hides its GPUs. It is logged once
when the outage begins and once when it ends. Past ``max_age`` seconds the
listing is too old to admit by: :meth:`ClusterView.outage` then names the
cluster, and the queue keeps GPU spawns for its regions waiting, with that
message, until it answers. A cluster never listed at all (no permission to
list Nodes there, say) stays unknown, and the queue lets the scheduler judge,
as it does for a region with no GPU node.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio.client import CoreV1Api
from kubespawner.clients import shared_client

from sovereign_hub.policy import HUB_CLUSTER, Cluster, Policy

from .clusters import cluster_client

log = logging.getLogger(__name__)

PLACEHOLDER_SELECTOR = "app.kubernetes.io/component=user-placeholder"
"""The label the chart's placeholder pods carry (``templates/scheduling/user-placeholder``)."""


def clusters_of(policy: Policy) -> dict[str, Cluster | None]:
    """Each cluster the policy's regions run in, by name (None: the hub's own)."""
    found: dict[str, Cluster | None] = {}
    for region in policy.regions.values():
        found.setdefault(region.cluster_name, region.cluster)
    return found


def _named(obj: Mapping[str, Any], section: str, field: str, cluster: str) -> dict[str, Any]:
    """A shallow copy of ``obj`` with ``obj[section][field]`` prefixed by the cluster."""
    inner = dict(obj.get(section) or {})
    if inner.get(field):
        inner[field] = f"{cluster}/{inner[field]}"
    return {**obj, section: inner}


async def _items(response: Any) -> list[dict[str, Any]]:
    # Raw JSON: the typed models would turn camelCase fields into snake_case ones.
    return json.loads(await response.read()).get("items") or []


@dataclass(frozen=True, slots=True)
class _Listing:
    nodes: list[dict[str, Any]]
    placeholders: list[dict[str, Any]]
    at: float
    """``time.monotonic()`` when it was listed."""


class ClusterView:
    """Nodes and placeholder pods of every cluster of the policy, named uniquely across them.

    :meth:`follow` says which policy, Secrets folder and namespace to list;
    :meth:`list_nodes` is the waiting room's node lister and refreshes the
    placeholders that :meth:`placeholders` returns with the same listing.
    """

    def __init__(self, max_age: float = 60.0) -> None:
        self.policy: Policy | None = None
        self.secrets_dir = ""
        self.namespace = ""
        self.max_age = max_age
        """Seconds a cluster's last good listing is admitted by once it stops answering."""
        self._listed: dict[str, _Listing] = {}
        self._down: dict[str, float] = {}
        """Clusters not answering, with the wall-clock time their outage began."""

    def follow(self, policy: Policy, secrets_dir: str, namespace: str) -> None:
        self.policy, self.secrets_dir, self.namespace = policy, secrets_dir, namespace

    async def _list(self, cluster: Cluster | None) -> tuple[list[Any], list[Any]]:
        if cluster is None:
            api = shared_client("CoreV1Api")
        else:
            api = CoreV1Api(await cluster_client(cluster, self.secrets_dir))
        nodes = await _items(await api.list_node(_preload_content=False))
        placeholders = await _items(
            await api.list_namespaced_pod(
                self.namespace, label_selector=PLACEHOLDER_SELECTOR, _preload_content=False
            )
        )
        return nodes, placeholders

    async def list_nodes(self) -> list[dict[str, Any]]:
        """The Node objects of every cluster, as last listed; its placeholders are kept."""
        if self.policy is None:
            return []
        names = clusters_of(self.policy)
        for name, cluster in names.items():
            try:
                listed, placeholders = await self._list(cluster)
            except Exception as exc:
                self._listing_failed(name, exc)
                continue
            if name in self._down:
                began = self._down.pop(name)
                log.warning("GPU queue: cluster %s answers again, after %.0f s", name,
                            time.time() - began)  # fmt: skip
            if name != HUB_CLUSTER:
                listed = [_named(n, "metadata", "name", name) for n in listed]
                placeholders = [_named(p, "spec", "nodeName", name) for p in placeholders]
            self._listed[name] = _Listing(listed, placeholders, time.monotonic())
        return [n for name, got in self._listed.items() if name in names for n in got.nodes]

    def _listing_failed(self, name: str, exc: Exception) -> None:
        if name in self._down:  # warned when the outage began
            log.debug("GPU queue: cluster %s still does not answer: %r", name, exc)
            return
        self._down[name] = time.time()
        last = self._listed.get(name)
        if last is None:
            log.warning("GPU queue: cannot list the nodes of cluster %s (%r); its GPUs are "
                        "unknown and the scheduler judges them", name, exc)  # fmt: skip
        else:
            log.warning("GPU queue: cannot list the nodes of cluster %s (%r); keeping its view "
                        "of %.0f s ago, for at most %.0f s", name, exc,
                        time.monotonic() - last.at, self.max_age)  # fmt: skip

    def outage(self, cluster: str) -> str | None:
        """Why GPU spawns for ``cluster`` wait: its last listing is too old; None if not."""
        began, last = self._down.get(cluster), self._listed.get(cluster)
        if began is None or last is None or time.monotonic() - last.at <= self.max_age:
            return None
        since = datetime.fromtimestamp(began, UTC).strftime("%H:%M UTC")
        return f"the hub cannot reach cluster {cluster} since {since} to see its free GPUs"

    def placeholders(self) -> list[dict[str, Any]]:
        """The placeholder pods of the clusters last listed, bound to the nodes' names."""
        names = clusters_of(self.policy) if self.policy is not None else {}
        return [p for name, got in self._listed.items() if name in names for p in got.placeholders]


def pods_everywhere(reflectors: Mapping[tuple[Any, ...], Any]) -> list[dict[str, Any]]:
    """The pods every pod reflector holds; a regional reflector's key ends with its cluster
    (:meth:`.RegionalClusters._get_reflector_key`)."""
    pods: list[dict[str, Any]] = []
    for key, reflector in list(reflectors.items()):
        if not key or key[0] != "pods" or reflector is None:
            continue
        held: Iterable[dict[str, Any]] = list(reflector.pods.values())
        if len(key) > 2:  # (kind, namespace, cluster)
            pods.extend(_named(p, "spec", "nodeName", key[2]) for p in held)
        else:
            pods.extend(held)
    return pods
