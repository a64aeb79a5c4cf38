"""Where a pod may run: kube-scheduler's filters, as pure functions.

Filters run per node in kube-scheduler's order (NodeUnschedulable,
TaintToleration, NodeAffinity, NodeResourcesFit), and a node is reported by
its first failing filter. Pods nominated to a node by an earlier preemption,
of priority at least the incoming pod's, count on that node as if bound, as
kube-scheduler adds them before filtering. The refusal message is built like
kube-scheduler's ``FitError``: counts of each reason, sorted, then the
preemption verdict.

Among feasible nodes the NodeResourcesFit score decides, by the profile's
``scoringStrategy``: ``LeastAllocated`` (kube-scheduler's default: spread)
or ``MostAllocated`` (pack, as Zero to JupyterHub's user scheduler is
configured), over the profile's weighted resources, the incoming pod
included, and pods without requests counted at kube-scheduler's non-zero
defaults (100m CPU, 200Mi memory). Ties go to the first node by name, which
is deterministic where kube-scheduler picks among ties at random; the other
score plugins (image locality, topology spread, balanced allocation) are
not emulated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sovereign_hub.policy.quantity import parse_quantity

Obj = Mapping[str, Any]
INSUFFICIENT = "Insufficient "


def pod_requests(pod: Obj) -> dict[str, Decimal]:
    """Effective requests: containers summed, init containers by max, plus one pod slot."""
    spec = pod.get("spec", {})

    def of(container: Obj) -> dict[str, Decimal]:
        resources = container.get("resources") or {}
        # A limit without a request means a request of the same amount.
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {k: parse_quantity(str(v)) for k, v in merged.items()}

    total: dict[str, Decimal] = {}
    for container in spec.get("containers", []):
        for key, value in of(container).items():
            total[key] = total.get(key, Decimal(0)) + value
    for container in spec.get("initContainers", []):
        for key, value in of(container).items():
            total[key] = max(total.get(key, Decimal(0)), value)
    total["pods"] = Decimal(1)
    return total


def _tolerates(tolerations: Iterable[Obj], taint: Obj) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if not t.get("key"):
            if t.get("operator") == "Exists":
                return True
            continue
        if t["key"] != taint.get("key"):
            continue
        if t.get("operator") == "Exists" or t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _expression(expr: Obj, values: Mapping[str, str]) -> bool:
    key, op = expr.get("key"), expr.get("operator")
    wanted = expr.get("values") or []
    present = key in values
    if op == "In":
        return present and values[key] in wanted
    if op == "NotIn":
        return not present or values[key] not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and wanted:
        try:
            have, bound = int(values[key]), int(wanted[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def matches_affinity(pod: Obj, node: Obj) -> bool:
    labels = node.get("metadata", {}).get("labels") or {}
    spec = pod.get("spec", {})
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    if not required:
        return True
    fields = {"metadata.name": node.get("metadata", {}).get("name", "")}
    for term in required.get("nodeSelectorTerms") or []:
        exprs, field_exprs = term.get("matchExpressions") or [], term.get("matchFields") or []
        if not exprs and not field_exprs:
            continue  # an empty term matches nothing
        if all(_expression(e, labels) for e in exprs) and all(
            _expression(e, fields) for e in field_exprs
        ):
            return True
    return False


def _allocatable(node: Obj) -> dict[str, Decimal]:
    status = node.get("status", {})
    raw = status.get("allocatable") or status.get("capacity") or {}
    return {k: parse_quantity(str(v)) for k, v in raw.items()}


def used_on(node_name: str, pods: Iterable[Obj]) -> dict[str, Decimal]:
    """What pods bound to ``node_name`` and not finished request in total."""
    used: dict[str, Decimal] = {}
    for pod in pods:
        if pod.get("spec", {}).get("nodeName") != node_name:
            continue
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for key, value in pod_requests(pod).items():
            used[key] = used.get(key, Decimal(0)) + value
    return used


def node_failures(pod: Obj, node: Obj, used: Mapping[str, Decimal]) -> list[str]:
    """Why ``pod`` cannot run on ``node`` (empty when it can), first failing filter only."""
    spec = node.get("spec", {})
    if spec.get("unschedulable"):
        return ["node(s) were unschedulable"]
    tolerations = pod.get("spec", {}).get("tolerations") or []
    for taint in spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(
            tolerations, taint
        ):
            return [
                f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
            ]
    if not matches_affinity(pod, node):
        return ["node(s) didn't match Pod's node affinity/selector"]
    free = _allocatable(node)
    short = []
    for key, amount in sorted(pod_requests(pod).items()):
        if amount <= 0:
            continue
        if amount + used.get(key, Decimal(0)) > free.get(key, Decimal(0)):
            short.append("Too many pods" if key == "pods" else f"{INSUFFICIENT}{key}")
    return short


@dataclass(frozen=True, slots=True)
class Placement:
    node: str | None
    message: str
    """For a refusal: kube-scheduler's FailedScheduling message."""
    resource_only: tuple[str, ...] = ()
    """For a refusal: the nodes that failed only for resources (where preemption may help)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """One kube-scheduler profile's NodeResourcesFit scoring."""

    strategy: str = "LeastAllocated"
    """``LeastAllocated`` or ``MostAllocated``."""
    resources: tuple[tuple[str, int], ...] = (("cpu", 1), ("memory", 1))
    """(resource, weight) pairs the score averages over."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"scoring strategy {self.strategy!r} is not emulated; "
                f"known: {', '.join(STRATEGIES)}"
            )


STRATEGIES = ("LeastAllocated", "MostAllocated")
DEFAULT_PROFILE = Profile()
_NON_ZERO = {"cpu": Decimal("0.1"), "memory": Decimal(200 * 1024 * 1024)}


def _scoring_requests(pod: Obj) -> dict[str, Decimal]:
    asked = pod_requests(pod)
    for key, default in _NON_ZERO.items():
        if not asked.get(key):
            asked[key] = default
    return asked


def score(pod: Obj, node: Obj, bound: Iterable[Obj], profile: Profile) -> Decimal:
    """NodeResourcesFit's score (0-100) of ``node`` for ``pod`` beside the pods ``bound`` there."""
    free = _allocatable(node)
    asked = _scoring_requests(pod)
    requested: dict[str, Decimal] = {}
    for other in bound:
        for key, value in _scoring_requests(other).items():
            requested[key] = requested.get(key, Decimal(0)) + value
    total, weights = Decimal(0), 0
    for key, weight in profile.resources:
        capacity = free.get(key, Decimal(0))
        if capacity <= 0:
            continue
        share = min((requested.get(key, Decimal(0)) + asked.get(key, Decimal(0))) / capacity, 1)
        total += weight * 100 * (share if profile.strategy == "MostAllocated" else 1 - share)
        weights += weight
    return total / weights if weights else Decimal(0)


def _running(pods: Iterable[Obj]) -> list[Obj]:
    return [p for p in pods if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]


def _nominated(pod: Obj, pods: Iterable[Obj]) -> dict[str, list[Obj]]:
    """Unbound pods nominated to a node, of priority at least ``pod``'s, by node."""
    mine = pod.get("metadata", {}).get("uid") or pod.get("metadata", {}).get("name")
    prio = pod_priority(pod)
    found: dict[str, list[Obj]] = {}
    for other in pods:
        meta = other.get("metadata", {})
        node = other.get("status", {}).get("nominatedNodeName")
        if not node or other.get("spec", {}).get("nodeName") or meta.get("deletionTimestamp"):
            continue
        if (meta.get("uid") or meta.get("name")) == mine or pod_priority(other) < prio:
            continue
        found.setdefault(node, []).append({**other, "spec": {**other["spec"], "nodeName": node}})
    return found


def pod_priority(pod: Obj) -> int:
    return int(pod.get("spec", {}).get("priority") or 0)


def place(
    pod: Obj, nodes: Iterable[Obj], pods: Iterable[Obj], profile: Profile = DEFAULT_PROFILE
) -> Placement:
    """Choose a node for ``pod``, or say why none fits."""
    pods = list(pods)
    nominated = _nominated(pod, pods)
    nodes = sorted(nodes, key=lambda n: n["metadata"]["name"])
    # Each node's pods, gathered once: a thousand pods on sixty nodes, looked at per node,
    # was the emulated cluster's largest cost under a load test's burst.
    by_node: dict[str, list[Obj]] = {}
    for other in pods:
        bound_to = other.get("spec", {}).get("nodeName")
        if bound_to:
            by_node.setdefault(bound_to, []).append(other)
    reasons: Counter[str] = Counter()
    resource_only: list[str] = []
    feasible = []
    for node in nodes:
        name = node["metadata"]["name"]
        here = [*by_node.get(name, []), *nominated.get(name, [])]
        used = used_on(name, here)
        failures = node_failures(pod, node, used)
        if not failures:
            bound = [p for p in _running(here) if p.get("spec", {}).get("nodeName") == name]
            feasible.append((-score(pod, node, bound, profile), name))
            continue
        reasons.update(failures)
        if all(f.startswith(INSUFFICIENT) or f == "Too many pods" for f in failures):
            resource_only.append(name)
    if feasible:
        return Placement(min(feasible)[1], "")
    total = len(nodes)
    summary = ", ".join(sorted(f"{n} {reason}" for reason, n in reasons.items()))
    preemption = []
    fixable = len(resource_only)
    if fixable:
        preemption.append(f"{fixable} No preemption victims found for incoming pod")
    if total - fixable:
        preemption.append(f"{total - fixable} Preemption is not helpful for scheduling")
    message = (
        f"0/{total} nodes are available: {summary}."
        if summary
        else f"0/{total} nodes are available."
    )
    if pod.get("spec", {}).get("preemptionPolicy") == "Never":
        message += " preemption: not eligible due to preemptionPolicy=Never."
    elif total:
        message += f" preemption: 0/{total} nodes are available: {', '.join(sorted(preemption))}."
    return Placement(None, message, tuple(resource_only))
