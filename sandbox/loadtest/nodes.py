"""A node inventory sized for a load: enough CPU nodes in each region for the servers that
can run there at once, so a run measures the hub and not a cluster too small for it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from decimal import Decimal

from sovereign_hub.policy import Policy
from sovereign_hub.sandbox.kube.inventory import Inventory, NodeSpec

from .plan import SimUser

DEFAULT_PODS = Decimal(110)  # the kubelet's default maxPods, as node_object() registers it


def servers_per_node(node: NodeSpec, cpu: Decimal, memory: Decimal) -> int:
    """How many servers requesting ``cpu`` and ``memory`` the node's allocatable holds."""
    alloc = node.allocatable
    fits = [alloc["pods"].value if "pods" in alloc else DEFAULT_PODS]
    for key, amount in (("cpu", cpu), ("memory", memory)):
        if amount > 0:
            have = alloc[key].value if key in alloc else Decimal(0)
            fits.append(have // amount)
    return int(min(fits))


def sized_inventory(
    base: Inventory, users: Sequence[SimUser], concurrency: int, policy: Policy
) -> Inventory:
    """``base`` with each region's CPU nodes repeated until the region's busiest moment fits.

    A region's busiest moment is ``min(its spawning users, concurrency)`` servers at once: the load
    generator keeps at most ``concurrency`` users active, and each holds one server. Each
    server requests its profile's guarantees (the largest among the profiles drawn for
    that region). A region's CPU nodes are its untainted nodes; the first one is the
    template and the copies are named ``<template minus its last digit><n>``, as the
    storm test does. GPU (tainted) nodes stay as they are: GPU quota and queueing are
    part of what a GPU load measures. The inventory never shrinks.
    """
    label = policy.scheduling.region_label
    users = [u for u in users if u.spawns]  # a user who only logs in holds no server
    wanted: Counter[str] = Counter(u.choice.region for u in users if _cpu_only(policy, u))
    nodes = list(base.nodes)
    for region, count in sorted(wanted.items()):
        node_regions = set(policy.regions[region].node_regions)
        cpu_nodes = [n for n in nodes if not n.taints and n.labels.get(label) in node_regions]
        if not cpu_nodes:
            raise ValueError(
                f"the node inventory has no untainted node labelled {label} in "
                f"{sorted(node_regions)} for region {region!r}"
            )
        profiles = [
            policy.profiles[u.choice.profile]
            for u in users
            if u.choice.region == region and _cpu_only(policy, u)
        ]
        cpu = max(p.cpu.guarantee.value for p in profiles)
        memory = max(p.memory.guarantee.value for p in profiles)
        template = cpu_nodes[0]
        per_node = servers_per_node(template, cpu, memory)
        if per_node < 1:
            raise ValueError(
                f"node {template.name} cannot hold one server of region {region!r} "
                f"(it requests cpu {cpu}, memory {memory})"
            )
        needed = -(-min(count, concurrency) // per_node)
        if needed <= len(cpu_nodes):
            continue
        stem = template.name.rstrip("0123456789")
        taken = {n.name for n in nodes}
        copies = []
        i = 1
        while len(cpu_nodes) + len(copies) < needed:
            name = f"{stem}{i}"
            i += 1
            if name not in taken:
                copies.append(template.model_copy(update={"name": name}))
        at = nodes.index(cpu_nodes[-1]) + 1
        nodes[at:at] = copies
    return Inventory(nodes=tuple(nodes))


def _cpu_only(policy: Policy, user: SimUser) -> bool:
    return policy.profiles[user.choice.profile].gpu is None
