"""The load's node inventory: each region gets CPU nodes for its busiest moment, so a run at
1,000 concurrent spawns is bounded by the hub, not by a three-node emulated cluster."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from sovereign_hub.policy import load_policy
from sovereign_hub.sandbox.kube.inventory import Inventory, load_inventory, node_object
from sovereign_hub.sandbox.kube.placement import node_failures, pod_requests
from sovereign_hub.sandbox.loadtest import LoadPlan, population
from sovereign_hub.sandbox.loadtest.nodes import servers_per_node, sized_inventory
from tests.conftest import ROOT

POLICY = load_policy(ROOT / "examples" / "policy.yaml").policy
SANDBOX = load_inventory(ROOT / "sandbox" / "nodes.yaml")
LABEL = POLICY.scheduling.region_label


def cpu_nodes(inventory: Inventory, region: str) -> list:
    regions = set(POLICY.regions[region].node_regions)
    return [n for n in inventory.nodes if not n.taints and n.labels.get(LABEL) in regions]


def test_a_cpu_small_server_takes_a_sixteenth_of_a_sandbox_node():
    """500m of 8 CPUs and 2 GiB of 32 GiB: 16 per node, and the pod count caps it too."""
    node = cpu_nodes(SANDBOX, "eu")[0]
    assert servers_per_node(node, Decimal("0.5"), Decimal(2 * 2**30)) == 16
    assert servers_per_node(node, Decimal("0.001"), Decimal(1)) == 110


def test_a_thousand_concurrent_of_five_thousand_fit_in_each_region():
    users = population(LoadPlan(users=5000, concurrency=1000), POLICY)
    per_region = Counter(u.choice.region for u in users)
    # The sandbox's three nodes hold 16 servers per region: the run would be bounded by them.
    assert len(cpu_nodes(SANDBOX, "eu")) * 16 < 1000
    sized = sized_inventory(SANDBOX, users, 1000, POLICY)
    names = [n.name for n in sized.nodes]
    assert len(names) == len(set(names))
    for region in ("eu", "us"):
        assert per_region[region] > 1000  # so the region's busiest moment is 1,000 servers
        nodes = cpu_nodes(sized, region)
        assert len(nodes) == 63  # ceil(1000 / 16): no more than needed
        assert all(n.labels == nodes[0].labels for n in nodes)
    # The GPU node is kept as it is: quota and queueing are part of a GPU load.
    assert [n for n in sized.nodes if n.taints] == [n for n in SANDBOX.nodes if n.taints]


def test_users_who_only_log_in_hold_no_room():
    """5,000 logged in, 1,000 of them spawning: the nodes are sized for the spawners' regions."""
    users = population(LoadPlan(users=5000, spawners=1000, concurrency=1000), POLICY)
    spawning = Counter(u.choice.region for u in users if u.spawns)
    sized = sized_inventory(SANDBOX, users, 1000, POLICY)
    for region in ("eu", "us"):
        assert len(cpu_nodes(sized, region)) == max(3, -(-spawning[region] // 16)), region


def test_the_emulated_scheduler_would_place_the_regions_busiest_moment():
    """Fill every sized EU node with the servers the profile asks for, as the scheduler checks
    them (its own filter), and count: at least min(users, concurrency)."""
    users = population(LoadPlan(users=300, concurrency=200), POLICY)
    eu = sum(u.choice.region == "eu" for u in users)
    sized = sized_inventory(SANDBOX, users, 200, POLICY)
    profile = POLICY.profiles["cpu-small"]
    pod = {
        "spec": {
            "containers": [
                {
                    "resources": {
                        "requests": {
                            "cpu": profile.cpu.guarantee.text,
                            "memory": profile.memory.guarantee.text,
                        }
                    }
                }
            ],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": LABEL, "operator": "In", "values": ["eu-central-1"]}
                                ]
                            }
                        ]
                    }
                }
            },
        }
    }
    placed = 0
    for spec in sized.nodes:
        node = node_object(spec)
        used: dict[str, Decimal] = {}
        while not node_failures(pod, node, used):
            for key, amount in pod_requests(pod).items():
                used[key] = used.get(key, Decimal(0)) + amount
            placed += 1
    assert placed >= min(eu, 200)


def test_a_small_load_keeps_the_inventory_as_it_is():
    users = population(LoadPlan(users=10, concurrency=5), POLICY)
    assert sized_inventory(SANDBOX, users, 5, POLICY) == SANDBOX


def test_a_region_without_a_cpu_node_is_named():
    users = population(LoadPlan(users=40, concurrency=40), POLICY)
    only_eu = Inventory(nodes=tuple(n for n in SANDBOX.nodes if n.name.startswith("eu-")))
    with pytest.raises(ValueError, match=r"no untainted node .* region 'us'"):
        sized_inventory(only_eu, users, 40, POLICY)
