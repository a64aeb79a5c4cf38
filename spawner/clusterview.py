"""The GPU queue's view of every cluster the policy's regions run in.

The queue (:mod:`.waiting`) judges free GPUs from Node objects and the hub's
user pods. With regions in clusters of their own, the GPU nodes of a region are
in that region's cluster: the view lists the nodes of each cluster and takes
the pods of each cluster's pod reflector. Node names are only unique within a
cluster, so those of a region's own cluster are prefixed with the cluster's
name (``us-east/gpu-1``), in the nodes and in the pods bound to them alike;
the objects the reflectors hold are never changed.

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


async def list_nodes_everywhere(policy: Policy, secrets_dir: str) -> list[dict[str, Any]]:
    """The Node objects of every cluster of the policy, named uniquely across them."""
    nodes: list[dict[str, Any]] = []
    for name, cluster in clusters_of(policy).items():
        try:
            if cluster is None:
                api = shared_client("CoreV1Api")
            else:
                api = CoreV1Api(await cluster_client(cluster, secrets_dir))
            response = await api.list_node(_preload_content=False)
            items = json.loads(await response.read()).get("items") or []
        except Exception as exc:
            log.warning("GPU queue: cannot list the nodes of cluster %s: %r", name, exc)
            continue
        if name == HUB_CLUSTER:
            nodes.extend(items)
        else:
            nodes.extend(_named(n, "metadata", "name", name) for n in items)
    return nodes


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
