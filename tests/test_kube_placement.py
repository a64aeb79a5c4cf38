"""kube-scheduler's filters and messages, on literal pods and nodes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sovereign_hub.sandbox.kube.placement import Profile, place, pod_requests

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def node(name, labels=None, taints=None, **allocatable):
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or []},
        "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110", **allocatable}},
    }


def pod(name="p", node_name=None, requests=None, limits=None, **spec):
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeName": node_name,
            "containers": [
                {"name": "c", "resources": {"requests": requests or {}, "limits": limits or {}}}
            ],
            **spec,
        },
        "status": {"phase": "Running" if node_name else "Pending"},
    }


NODES = [
    node("eu-cpu", {"region": "eu"}),
    node("eu-gpu", {"region": "eu", "gpu": "a100"}, [GPU_TAINT], **{"nvidia.com/gpu": "2"}),
    node("us-cpu", {"region": "us"}),
]
EU = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}]}
            ]
        }
    }
}
TOLERATE_GPU = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_limits_imply_requests_and_init_containers_take_the_max():
    p = pod(limits={"cpu": "2", "nvidia.com/gpu": "1"})
    p["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "3"}}}]
    assert pod_requests(p) == {"cpu": Decimal(3), "nvidia.com/gpu": Decimal(1), "pods": Decimal(1)}


def test_affinity_mismatch_reported_per_node():
    us_only = pod(
        affinity={
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "region", "operator": "In", "values": ["mars"]}
                            ]
                        }
                    ]
                }
            }
        }
    )
    result = place(us_only, NODES, [])
    assert result.node is None
    assert result.message == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}, "
        "2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are "
        "available: 3 Preemption is not helpful for scheduling."
    )


def test_missing_toleration_keeps_gpu_pods_off_gpu_nodes():
    gpu_pod = pod(limits={"nvidia.com/gpu": "1"}, affinity=EU)
    result = place(gpu_pod, NODES, [])
    assert result.node is None
    assert "1 node(s) had untolerated taint {nvidia.com/gpu: present}" in result.message
    assert "1 Insufficient nvidia.com/gpu" in result.message  # the EU CPU node has none


def test_gpu_capacity_exhausted_then_freed():
    gpu_pod = pod(limits={"nvidia.com/gpu": "1"}, affinity=EU, tolerations=TOLERATE_GPU)
    holder = pod("holder", "eu-gpu", limits={"nvidia.com/gpu": "2"}, tolerations=TOLERATE_GPU)
    full = place(gpu_pod, NODES, [holder])
    assert full.node is None
    assert full.message.startswith(
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient nvidia.com/gpu."
    )
    assert "2 No preemption victims found for incoming pod" in full.message
    holder["status"]["phase"] = "Succeeded"  # finished pods hold nothing
    assert place(gpu_pod, NODES, [holder]).node == "eu-gpu"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"nodeSelector": {"region": "us"}}, "us-cpu"),
        ({"affinity": EU}, "eu-cpu"),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "region", "operator": "NotIn", "values": ["eu"]}
                                    ]
                                }
                            ]
                        }
                    }
                }
            },
            "us-cpu",
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}
                            ]
                        }
                    }
                },
                "tolerations": TOLERATE_GPU,
            },
            "eu-gpu",
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchFields": [
                                        {
                                            "key": "metadata.name",
                                            "operator": "In",
                                            "values": ["us-cpu"],
                                        }
                                    ]
                                }
                            ]
                        }
                    }
                }
            },
            "us-cpu",
        ),
    ],
)
def test_placement_honours_selectors_and_affinity(spec, expected):
    assert place(pod(**spec), NODES, []).node == expected


def test_least_allocated_node_wins():
    busy = pod("busy", "eu-cpu", requests={"cpu": "3"})
    assert (
        place(
            pod(affinity=EU, requests={"cpu": "500m"}, tolerations=TOLERATE_GPU), NODES, [busy]
        ).node
        == "eu-gpu"
    )


def test_cpu_and_memory_shortage_named_together():
    result = place(
        pod(requests={"cpu": "64", "memory": "1Ti"}, nodeSelector={"region": "us"}), NODES, []
    )
    assert "1 Insufficient cpu, 1 Insufficient memory" in result.message


def test_unschedulable_node_is_skipped():
    cordoned = node("only")
    cordoned["spec"]["unschedulable"] = True
    assert "1 node(s) were unschedulable" in place(pod(), [cordoned], []).message


def test_toleration_with_empty_key_and_exists_tolerates_everything():
    assert (
        place(
            pod(tolerations=[{"operator": "Exists"}], nodeSelector={"gpu": "a100"}), NODES, []
        ).node
        == "eu-gpu"
    )


def _two_gpu_nodes():
    return [
        node("gpu-a", {"region": "eu"}, [GPU_TAINT], **{"nvidia.com/gpu": "4"}),
        node("gpu-b", {"region": "eu"}, [GPU_TAINT], **{"nvidia.com/gpu": "4"}),
    ]


@pytest.mark.parametrize(
    ("strategy", "second_on"), [("LeastAllocated", "gpu-b"), ("MostAllocated", "gpu-a")]
)
def test_the_profiles_scoring_spreads_or_packs(strategy, second_on):
    profile = Profile(strategy)
    asks = {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}
    first = pod("one", requests=asks, tolerations=TOLERATE_GPU)
    nodes = _two_gpu_nodes()
    assert place(first, nodes, [], profile).node == "gpu-a"  # a tie: the first by name
    running = [pod("one", node_name="gpu-a", requests=asks)]
    second = pod("two", requests=asks, tolerations=TOLERATE_GPU)
    assert place(second, nodes, running, profile).node == second_on


def test_a_pod_without_requests_is_scored_at_the_non_zero_defaults():
    # Both nodes hold nothing the profile weighs but a request-less pod on gpu-a: that pod
    # counts at 100m CPU / 200Mi, so packing prefers gpu-a and spreading gpu-b.
    nodes = _two_gpu_nodes()
    running = [pod("bare", node_name="gpu-a")]
    new = pod("new", tolerations=TOLERATE_GPU)
    assert place(new, nodes, running, Profile("MostAllocated")).node == "gpu-a"
    assert place(new, nodes, running, Profile("LeastAllocated")).node == "gpu-b"


def test_a_nominated_pod_of_higher_priority_holds_its_room():
    gpu_node = [node("gpu-a", {}, [GPU_TAINT], **{"nvidia.com/gpu": "1"})]
    nominated = pod("vip", requests={"nvidia.com/gpu": "1"}, priority=100)
    nominated["status"]["nominatedNodeName"] = "gpu-a"
    low = pod("low", requests={"nvidia.com/gpu": "1"}, tolerations=TOLERATE_GPU, priority=0)
    refusal = place(low, gpu_node, [nominated])
    assert refusal.node is None
    assert "1 Insufficient nvidia.com/gpu" in refusal.message
    assert refusal.resource_only == ("gpu-a",)
    # The nominated pod itself, or one of higher priority, is not held back by it.
    high = pod("high", requests={"nvidia.com/gpu": "1"}, tolerations=TOLERATE_GPU, priority=200)
    assert place(high, gpu_node, [nominated]).node == "gpu-a"


def test_a_pod_that_never_preempts_says_so():
    gpu_node = [node("gpu-a", {}, [GPU_TAINT], **{"nvidia.com/gpu": "1"})]
    busy = [pod("busy", node_name="gpu-a", requests={"nvidia.com/gpu": "1"})]
    shy = pod(
        "shy",
        requests={"nvidia.com/gpu": "1"},
        tolerations=TOLERATE_GPU,
        preemptionPolicy="Never",
    )
    assert place(shy, gpu_node, busy).message == (
        "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: not eligible due "
        "to preemptionPolicy=Never."
    )


def test_an_unknown_scoring_strategy_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="'RequestedToCapacityRatio' is not emulated; known: "
                       "LeastAllocated, MostAllocated"):  # fmt: skip
        Profile("RequestedToCapacityRatio")
