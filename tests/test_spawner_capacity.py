"""Free GPUs per node from Node and Pod objects (spawner/capacity.py)."""

from __future__ import annotations

from sovereign_hub.spawner.capacity import Need, coming_gpus, free_gpus, pod_need, slots, take

REGION, PRODUCT = "topology.kubernetes.io/region", "nvidia.com/gpu.product"
A100 = "NVIDIA-A100-SXM4-40GB"


def node(name, gpus="2", region="eu-central-1", product=A100, ready=True, taints=(), **spec):
    return {
        "metadata": {"name": name, "labels": {REGION: region, PRODUCT: product}},
        "spec": {"taints": list(taints), **spec},
        "status": {
            "allocatable": {"cpu": "16", "nvidia.com/gpu": gpus},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(gpus, node_name=None, phase="Running", region="eu-central-1"):
    return {
        "metadata": {"name": f"p{gpus}{node_name}"},
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus), "cpu": "2"}}}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": REGION, "operator": "In", "values": [region]},
                                    {"key": PRODUCT, "operator": "In", "values": [A100]},
                                ]
                            }
                        ]
                    }
                }
            },
        },
        "status": {"phase": phase},
    }


ONE = Need("nvidia.com/gpu", 1, ("eu-central-1",), A100)
GPU_TAINT = frozenset({"nvidia.com/gpu"})


def free(nodes, pods, pending=()):
    found = free_gpus(
        nodes,
        pods,
        region_label=REGION,
        product_label=PRODUCT,
        tolerated_taints=GPU_TAINT,
        pending=pending,
    )
    return {n.name: n.free.get("nvidia.com/gpu", 0) for n in found}


def test_allocatable_minus_running_pods_and_unbound_ones():
    nodes = [node("g1"), node("g2")]
    pods = [
        pod(1, "g1"),
        pod(1, "g1", phase="Succeeded"),  # finished pods hold nothing
        pod(1, None, phase="Pending"),  # not bound yet: charged to the first node with room
    ]
    assert free(nodes, pods) == {"g1": 0, "g2": 2}
    assert free(nodes, pods, pending=[ONE]) == {"g1": 0, "g2": 1}


def test_nodes_that_cannot_take_a_pod_are_left_out():
    nodes = [
        node("not-ready", ready=False),
        node("cordoned", unschedulable=True),
        node("tainted", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
        node("gpu-taint", taints=[{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]),
        node("cpu", gpus="0"),
    ]
    assert free(nodes, []) == {"gpu-taint": 2}


def test_take_and_slots_respect_region_and_product():
    nodes = free_gpus(
        [node("eu"), node("us", region="us-east-1"), node("h100", product="NVIDIA-H100")],
        [],
        region_label=REGION,
        product_label=PRODUCT,
        tolerated_taints=GPU_TAINT,
    )
    assert slots(nodes, ONE) == 2
    two = Need("nvidia.com/gpu", 2, ("eu-central-1",), A100)
    assert take(nodes, ONE) == "eu"
    assert take(nodes, two) is None  # one GPU left in the EU A100 pool
    assert take(nodes, ONE) == "eu"
    assert take(nodes, ONE) is None


def test_pod_need_reads_requests_and_required_affinity():
    assert pod_need(pod(2), REGION, PRODUCT) == Need("nvidia.com/gpu", 2, ("eu-central-1",), A100)
    cpu_only = {"spec": {"containers": [{"resources": {"limits": {"cpu": "1"}}}]}}
    assert pod_need(cpu_only, REGION, PRODUCT) is None


def _with_priority(p, value):
    p["spec"]["priority"] = value
    return p


def test_lower_priority_pods_count_as_free_to_a_user_pod_that_may_preempt():
    # A placeholder (priority -10) holds one GPU of eu-gpu-1, a user (priority 0) the other.
    nodes = [node("eu-gpu-1")]
    pods = [_with_priority(pod(1, "eu-gpu-1"), -10), _with_priority(pod(1, "eu-gpu-1"), 0)]

    def free_for(priority):
        found = free_gpus(
            nodes,
            pods,
            region_label=REGION,
            product_label=PRODUCT,
            tolerated_taints=GPU_TAINT,
            preemptible_below=priority,
        )
        return found[0].free["nvidia.com/gpu"]

    assert free_for(None) == 0  # no preemption: the placeholder's GPU is taken
    assert free_for(0) == 1  # the placeholder would be evicted; the equal-priority user not
    assert free_for(-10) == 0  # a pod never preempts its equal


NOT_READY = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
GPU_NO_SCHEDULE = {"key": "nvidia.com/gpu", "effect": "NoSchedule"}


def created(node_obj, minutes_ago: float, now: float) -> dict:
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(now - minutes_ago * 60, UTC)
    node_obj["metadata"]["creationTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return node_obj


def test_nodes_that_are_starting_count_for_the_estimate_only():
    now = 1_800_000_000.0
    nodes = [
        created(node("new", gpus="4", ready=False, taints=[NOT_READY, GPU_NO_SCHEDULE]), 1, now),
        created(node("stuck", gpus="4", ready=False, taints=[NOT_READY]), 30, now),
        created(node("us", gpus="4", region="us-east-1", ready=False, taints=[NOT_READY]), 1, now),
        created(node("cordoned", gpus="4", ready=False, unschedulable=True), 1, now),
        created(node("ready", gpus="2"), 60, now),
    ]
    common = dict(region_label=REGION, product_label=PRODUCT, tolerated_taints=GPU_TAINT)
    assert [n.name for n in free_gpus(nodes, [], **common)] == ["ready"]
    # "new" is Ready in 4 of its 5 minutes; "stuck" (30 minutes NotReady) is taken for broken.
    assert coming_gpus(nodes, ONE, start_seconds=300, now=now, **common) == [(4, 240.0)]
    two = Need("nvidia.com/gpu", 2, ("eu-central-1",), A100)
    assert coming_gpus(nodes[:1], two, start_seconds=300, now=now, **common) == [(4, 240.0)]
