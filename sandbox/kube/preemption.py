"""Which pods to evict for a pod that fits nowhere: kube-scheduler's DefaultPreemption, pure.

As the real plugin decides:

- A pod with ``preemptionPolicy: Never`` never preempts; nor does a pod
  already nominated to a node where a lower-priority pod it preempted is
  still terminating (it waits for that room instead of evicting more).
- Only nodes that failed for resources alone are candidates (preemption
  cannot lift a taint or an affinity mismatch). On each, every pod of lower
  priority is taken away; if the pod then fits, victims are *reprieved*
  from the most important down (higher priority first, then the one started
  earlier) while it still fits, so the fewest and least important go.
- Among candidate nodes the one whose most important victim has the lowest
  priority wins, then the lowest sum of victim priorities, then the fewest
  victims, then (deterministic here) the first by name. As upstream
  (``pickOneNodeForPreemption``), each priority is raised by ``MaxInt32 + 1``
  before summing, so every term is positive: otherwise a node with more
  victims of a negative priority (placeholders) would beat one with fewer.

Not emulated: PodDisruptionBudgets (no victim is spared for one), and the
"latest start time" tie-break, replaced by the node name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .placement import Obj, node_failures, pod_priority, used_on

DISRUPTION_TARGET = "DisruptionTarget"
PREEMPTED_REASON = "PreemptionByScheduler"
_SUM_OFFSET = 2**31
"""``MaxInt32 + 1``: what kube-scheduler adds to each victim's priority when summing them."""


@dataclass(frozen=True, slots=True)
class Preemption:
    node: str
    victims: tuple[Obj, ...]


NEVER = "not eligible due to preemptionPolicy=Never."
TERMINATING = "not eligible due to a terminating pod on the nominated node."


def _terminating_by_preemption(pod: Obj) -> bool:
    return bool(pod.get("metadata", {}).get("deletionTimestamp")) and any(
        c.get("type") == DISRUPTION_TARGET and c.get("reason") == PREEMPTED_REASON
        for c in pod.get("status", {}).get("conditions") or []
    )


def ineligible(pod: Obj, pods: Iterable[Obj]) -> str | None:
    """``PodEligibleToPreemptOthers``: why ``pod`` may not preempt now, or None if it may."""
    if pod.get("spec", {}).get("preemptionPolicy") == "Never":
        return NEVER
    nominated = pod.get("status", {}).get("nominatedNodeName")
    prio = pod_priority(pod)
    if nominated and any(
        p.get("spec", {}).get("nodeName") == nominated
        and pod_priority(p) < prio
        and _terminating_by_preemption(p)
        for p in pods
    ):
        return TERMINATING
    return None


def eligible(pod: Obj, pods: Iterable[Obj]) -> bool:
    return ineligible(pod, pods) is None


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
        key = (max(prios), sum(p + _SUM_OFFSET for p in prios), len(victims), name)
        if best is None or key < best[0]:
            best = (key, Preemption(name, victims))
    return best[1] if best else None
