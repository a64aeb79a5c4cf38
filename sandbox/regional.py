"""The sandbox with regions in emulated clusters of their own (``--region-cluster us``).

A region named here gets its own emulated Kubernetes cluster holding the
inventory's nodes of that region, and the policy the hub reads is a copy of
the given one in which that region names its cluster by kubeconfig, as
``docs/howto/run-a-region-in-its-own-cluster`` has an admin do. The hub's
own cluster keeps the other nodes. Everything else is the ordinary sandbox.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from sovereign_hub.policy import Policy

from .kube.inventory import Inventory


class RegionalSandboxError(ValueError):
    """The regions asked for cannot be split off; the message says why."""


def cluster_name(region: str) -> str:
    """The name the audit trail records for a region's sandbox cluster."""
    return f"{region}-sandbox"


def split_inventory(
    inventory: Inventory, policy: Policy, regions: list[str]
) -> tuple[Inventory, dict[str, Inventory]]:
    """The hub cluster's nodes, and each named region's own (by the policy's region label)."""
    label = policy.scheduling.region_label
    own: dict[str, Inventory] = {}
    taken: set[str] = set()
    for region in dict.fromkeys(regions):
        spec = policy.regions.get(region)
        if spec is None:
            raise RegionalSandboxError(
                f"--region-cluster {region!r}: the policy has no such region; its regions are "
                f"{', '.join(sorted(policy.regions))}"
            )
        nodes = [n for n in inventory.nodes if n.labels.get(label) in spec.node_regions]
        if not nodes:
            raise RegionalSandboxError(
                f"--region-cluster {region!r}: no node of the inventory has {label} in "
                f"{list(spec.node_regions)}"
            )
        own[region] = Inventory(nodes=tuple(nodes))
        taken |= {n.name for n in nodes}
    rest = tuple(n for n in inventory.nodes if n.name not in taken)
    if not rest:
        raise RegionalSandboxError(
            "--region-cluster: every node would leave the hub's own cluster; keep one region there"
        )
    return Inventory(nodes=rest), own


def policy_with_clusters(
    source: Path,
    kubeconfigs: dict[str, Path],
    out: Path,
    gateways: dict[str, str] | None = None,
    entries: dict[str, str] | None = None,
) -> Path:
    """``source`` with each region of ``kubeconfigs`` naming its cluster (and, in
    ``gateways``, the URL of its gateway; in ``entries``, of its entry point for browsers),
    written to ``out``."""
    doc = yaml.safe_load(source.read_text())
    for region, kubeconfig in kubeconfigs.items():
        doc["regions"][region]["cluster"] = {
            "name": cluster_name(region),
            "kubeconfig": str(kubeconfig.resolve()),
        }
        if gateways and region in gateways:
            doc["regions"][region]["cluster"]["gateway"] = {"url": gateways[region]}
            if entries and region in entries:
                doc["regions"][region]["cluster"]["gateway"]["publicUrl"] = entries[region]
    out.write_text(
        f"# {source} with regions in clusters of their own (written by the sandbox)\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
    return out
