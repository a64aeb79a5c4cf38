"""kube-scheduler's DefaultPreemption victim choice, on literal pods and nodes (pure)."""

from __future__ import annotations

from sovereign_hub.sandbox.kube.preemption import eligible, ineligible, select
from tests.test_kube_placement import GPU_TAINT, TOLERATE_GPU, node, pod

GPU = {"nvidia.com/gpu": "1"}


def bound(name, node_name, prio, gpus="1", started="2026-01-01T00:00:00Z", **extra):
    p = pod(name, node_name=node_name, requests={"nvidia.com/gpu": gpus}, priority=prio, **extra)
    p["status"]["startTime"] = started
    return p


def gpu_node(name, gpus="2", taints=(GPU_TAINT,)):
    return node(name, {}, list(taints), **{"nvidia.com/gpu": gpus})


def user(prio=0, **spec):
    return pod("user", requests=GPU, tolerations=TOLERATE_GPU, priority=prio, **spec)


def names(preemption):
    return sorted(v["metadata"]["name"] for v in preemption.victims)


def test_only_lower_priority_pods_are_victims_and_the_fewest_go():
    nodes = [gpu_node("a")]
    pods = [bound("ph-1", "a", -10), bound("ph-2", "a", -10)]
    chosen = select(user(), nodes, pods, ["a"])
    assert chosen.node == "a"
    assert len(chosen.victims) == 1  # one GPU needed: the other placeholder is reprieved
    equal = [bound("peer-1", "a", 0), bound("peer-2", "a", 0)]
    assert select(user(), nodes, equal, ["a"]) is None


def test_the_node_whose_victims_matter_least_is_chosen():
    nodes = [gpu_node("a", "1"), gpu_node("b", "1")]
    pods = [bound("batch", "a", 50), bound("placeholder", "b", -10)]
    chosen = select(user(prio=100), nodes, pods, ["a", "b"])
    assert (chosen.node, names(chosen)) == ("b", ["placeholder"])


def test_the_most_important_victim_is_reprieved_first():
    nodes = [gpu_node("a", "2")]
    pods = [bound("mid", "a", 10), bound("low", "a", -10)]
    assert names(select(user(prio=100), nodes, pods, ["a"])) == ["low"]


def test_never_and_a_pending_eviction_make_a_pod_ineligible():
    pods = [bound("ph", "a", -10)]
    assert select(user(preemptionPolicy="Never"), [gpu_node("a", "1")], pods, ["a"]) is None
    waiting = user()
    waiting["status"]["nominatedNodeName"] = "a"
    going = bound("ph", "a", -10)
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    # Terminating for another reason (a user's delete) does not hold the preemptor back.
    assert eligible(waiting, [going])
    going["status"]["conditions"] = [
        {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    ]
    assert ineligible(waiting, [going]) == (
        "not eligible due to a terminating pod on the nominated node."
    )
    assert eligible(user(), [going])


def test_preemption_cannot_help_where_the_pod_would_not_fit_anyway():
    # Only nodes that failed for resources alone are candidates; and a node too small even
    # when emptied of lower-priority pods yields none.
    nodes = [gpu_node("a", "1")]
    pods = [bound("ph", "a", -10)]
    assert select(user(), nodes, pods, []) is None
    two = pod("two", requests={"nvidia.com/gpu": "2"}, tolerations=TOLERATE_GPU, priority=0)
    assert select(two, nodes, pods, ["a"]) is None


def test_victim_priorities_are_summed_offset_by_maxint32_as_kube_scheduler_does():
    """Node a frees two GPUs by evicting two placeholders at -10, node b by evicting one at -10
    holding both. A raw sum (-20 < -10) would choose a and evict two pods; kube-scheduler adds
    MaxInt32+1 to each priority before summing, so fewer victims win: b, one pod."""
    nodes = [gpu_node("a", "2"), gpu_node("b", "2")]
    pods = [bound("ph-a1", "a", -10), bound("ph-a2", "a", -10), bound("ph-b", "b", -10, "2")]
    two = pod("two", requests={"nvidia.com/gpu": "2"}, tolerations=TOLERATE_GPU, priority=0)
    chosen = select(two, nodes, pods, ["a", "b"])
    assert (chosen.node, names(chosen)) == ("b", ["ph-b"])
