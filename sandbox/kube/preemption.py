"""Which pods to evict for a pod that fits nowhere: kube-scheduler's DefaultPreemption, pure.

As the real plugin decides:

- A pod with ``preemptionPolicy: Never`` never preempts; nor does a pod
  already nominated to a node where a lower-priority pod is still
  terminating (it waits for that room instead of evicting more).
- Only nodes that failed for resources alone are candidates (preemption
  cannot lift a taint or an affinity mismatch). On each, every pod of lower
  priority is taken away; if the pod then fits, victims are *reprieved*
  from the most important down (higher priority first, then the one started
  earlier) while it still fits, so the fewest and least important go.
- Among candidate nodes the one whose most important victim has the lowest
  priority wins, then the lowest sum of victim priorities, then the fewest
  victims, then (deterministic here) the first by name.

Not emulated: PodDisruptionBudgets (no victim is spared for one), and the
"latest start time" tie-break, replaced by the node name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .placement import Obj, node_failures, pod_priority, used_on

DISRUPTION_TARGET = "DisruptionTarget"
PREEMPTED_REASON = "PreemptionByScheduler"


@dataclass(frozen=True, slots=True)
class Preemption:
    node: str
    victims: tuple[Obj, ...]


def eligible(pod: Obj, pods: Iterable[Obj]) -> bool:
    """``PodEligibleToPreemptOthers``."""
    if pod.get("spec", {}).get("preemptionPolicy") == "Never":
        return False
    nominated = pod.get("status", {}).get("nominatedNodeName")
    if not nominated:
        return True
    prio = pod_priority(pod)
    return not any(
        p.get("spec", {}).get("nodeName") == nominated
        and p.get("metadata", {}).get("deletionTimestamp")
        and pod_priority(p) < prio
        for p in pods
    )


def _importance(pod: Obj) -> tuple[int, str]:
    started = pod.get("status", {}).get("startTime") or "9999"
    # Higher priority first, then earlier start: the most important are reprieved first.
    return (-pod_priority(pod), started)


def _victims_on(pod: Obj, node: Obj, pods: Sequence[Obj]) -> tuple[Obj, ...] | None:
    name = node["metadata"]["name"]
    prio = pod_priority(pod)
    here = [
        p
        for p in pods
        if p.get("spec", {}).get("nodeName") == name
        and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
    ]
    lower = [
        p for p in here if pod_priority(p) < prio and not p["metadata"].get("deletionTimestamp")
    ]
    if not lower:
        return None
    kept = [p for p in here if p not in lower]
    if node_failures(pod, node, used_on(name, kept)):
        return None
    victims = []
    for candidate in sorted(lower, key=_importance):
        if node_failures(pod, node, used_on(name, [*kept, candidate])):
            victims.append(candidate)
        else:
            kept.append(candidate)
    return tuple(victims)


def select(
    pod: Obj, nodes: Iterable[Obj], pods: Iterable[Obj], candidates: Iterable[str]
) -> Preemption | None:
    """The node to free for ``pod`` and the pods to evict there, or None if preemption cannot help.

    ``candidates``: the nodes that failed only for resources in the last placement.
    """
    pods = list(pods)
    if not eligible(pod, pods):
        return None
    wanted = set(candidates)
    best: tuple[tuple[int, int, int, str], Preemption] | None = None
    for node in nodes:
        name = node["metadata"]["name"]
        if name not in wanted:
            continue
        victims = _victims_on(pod, node, pods)
        if not victims:
            continue
        prios = [pod_priority(v) for v in victims]
        key = (max(prios), sum(prios), len(victims), name)
        if best is None or key < best[0]:
            best = (key, Preemption(name, victims))
    return best[1] if best else None
