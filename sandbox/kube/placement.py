"""Where a pod may run: kube-scheduler's filters, as pure functions.

Filters run per node in kube-scheduler's order (NodeUnschedulable,
TaintToleration, NodeAffinity, NodeResourcesFit), and a node is reported by
its first failing filter. The refusal message is built like kube-scheduler's
``FitError``: counts of each reason, sorted, then the preemption verdict.
Among feasible nodes the least allocated wins (ties by name), which is
deterministic where kube-scheduler's scoring is not.
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


def _score(node: Obj, used: Mapping[str, Decimal]) -> Decimal:
    free = _allocatable(node)
    shares = [used.get(k, Decimal(0)) / free[k] for k in ("cpu", "memory") if free.get(k)]
    return sum(shares, Decimal(0))


def place(pod: Obj, nodes: Iterable[Obj], pods: Iterable[Obj]) -> Placement:
    """Choose a node for ``pod``, or say why none fits."""
    pods = list(pods)
    nodes = sorted(nodes, key=lambda n: n["metadata"]["name"])
    reasons: Counter[str] = Counter()
    resource_only = 0
    feasible = []
    for node in nodes:
        used = used_on(node["metadata"]["name"], pods)
        failures = node_failures(pod, node, used)
        if not failures:
            feasible.append((_score(node, used), node["metadata"]["name"]))
            continue
        reasons.update(failures)
        if all(f.startswith(INSUFFICIENT) or f == "Too many pods" for f in failures):
            resource_only += 1
    if feasible:
        return Placement(min(feasible)[1], "")
    total = len(nodes)
    summary = ", ".join(sorted(f"{n} {reason}" for reason, n in reasons.items()))
    preemption = []
    if resource_only:
        preemption.append(f"{resource_only} No preemption victims found for incoming pod")
    if total - resource_only:
        preemption.append(f"{total - resource_only} Preemption is not helpful for scheduling")
    message = (
        f"0/{total} nodes are available: {summary}."
        if summary
        else f"0/{total} nodes are available."
    )
    message += (
        f" preemption: 0/{total} nodes are available: {', '.join(sorted(preemption))}."
        if total
        else ""
    )
    return Placement(None, message)
