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

A cluster that does not answer is left out of one listing (logged): its GPUs
are then unknown, and the queue lets the scheduler judge, as it does for a
region with no GPU node at all.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
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


class ClusterView:
    """Nodes and placeholder pods of every cluster of the policy, named uniquely across them.

    :meth:`follow` says which policy, Secrets folder and namespace to list;
    :meth:`list_nodes` is the waiting room's node lister and refreshes the
    placeholders that :meth:`placeholders` returns with the same listing.
    """

    def __init__(self) -> None:
        self.policy: Policy | None = None
        self.secrets_dir = ""
        self.namespace = ""
        self._placeholders: dict[str, list[dict[str, Any]]] = {}

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
        """The Node objects of every cluster that answers; its placeholders are kept."""
        nodes: list[dict[str, Any]] = []
        if self.policy is None:
            return nodes
        for name, cluster in clusters_of(self.policy).items():
            try:
                listed, placeholders = await self._list(cluster)
            except Exception as exc:
                log.warning("GPU queue: cannot list the nodes of cluster %s: %r", name, exc)
                self._placeholders.pop(name, None)
                continue
            if name != HUB_CLUSTER:
                listed = [_named(n, "metadata", "name", name) for n in listed]
                placeholders = [_named(p, "spec", "nodeName", name) for p in placeholders]
            nodes.extend(listed)
            self._placeholders[name] = placeholders
        return nodes

    def placeholders(self) -> list[dict[str, Any]]:
        """The placeholder pods of the clusters last listed, bound to the nodes' names."""
        return [p for held in self._placeholders.values() for p in held]


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
