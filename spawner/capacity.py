"""Free GPUs per node, from Node and Pod objects as the hub sees them. Pure: no API calls.

A node's free count of a GPU resource is its ``status.allocatable`` minus
the requests of the pods bound to it that have not finished. Pods not yet
bound (Pending, or admitted by the queue and not yet created) are charged
to the first node that could take them, so two admissions never count on
the same free GPU. Nodes that are unschedulable, not Ready, or tainted
with anything but the GPU taints the plan tolerates are left out; those
that are starting (:func:`coming_gpus`) count for the queue's estimate only.

Pods of lower priority than the user's pod, when that pod may preempt
(``preemptible_below``), are not charged: the scheduler would evict them for
it, so their GPUs are free to a real user. That is what placeholder pods are
for (low priority, holding GPUs for the next user); it holds for any pod the
hub sees with a priority below the user pods' own.

What this cannot see: pods of other controllers than the hub and its
placeholders (the pod reflector watches the hub's user pods only, and
:mod:`.clusterview` adds the placeholders) and devices a node reports as
allocatable but that are broken. The emulated scheduler (and Kubernetes')
stays the judge: an admitted pod that still does not fit waits Pending
under the spawn's ordinary start timeout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sovereign_hub.policy.quantity import parse_quantity

_DONE = ("Succeeded", "Failed")
NOT_READY = "node.kubernetes.io/not-ready"
"""The taint a new Node carries until it reports Ready (Kubernetes' TaintNodesByCondition)."""


@dataclass(frozen=True, slots=True)
class Need:
    """What one GPU pod needs from a node."""

    resource: str
    count: int
    node_regions: tuple[str, ...]
    product: str


@dataclass(slots=True)
class NodeGpus:
    """One schedulable node's GPUs: its region label value, product label and free counts."""

    name: str
    region: str
    product: str
    allocatable: dict[str, int]
    free: dict[str, int] = field(default_factory=dict)

    def takes(self, need: Need) -> bool:
        return (
            self.region in need.node_regions
            and self.product == need.product
            and self.free.get(need.resource, 0) >= need.count
        )


def _int(value: Any) -> int:
    try:
        return int(parse_quantity(str(value)))
    except (ValueError, TypeError, ArithmeticError):
        return 0


def _ready(node: Mapping[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _requests(pod: Mapping[str, Any], resources: Iterable[str]) -> dict[str, int]:
    wanted = set(resources)
    total: dict[str, int] = {}
    for container in pod.get("spec", {}).get("containers") or []:
        res = container.get("resources") or {}
        # Extended resources default their request to their limit.
        asked = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        for name, value in asked.items():
            if name in wanted:
                total[name] = total.get(name, 0) + _int(value)
    return total


def pod_need(pod: Mapping[str, Any], region_label: str, product_label: str) -> Need | None:
    """The GPU need of a pod from its GPU requests and required node affinity; None if none."""
    requests = {k: v for k, v in _requests(pod, _gpu_names(pod)).items() if v > 0 and "/" in k}
    if not requests:
        return None
    resource, count = next(iter(sorted(requests.items())))
    regions: tuple[str, ...] = ()
    product = ""
    affinity = pod.get("spec", {}).get("affinity") or {}
    required = (affinity.get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for expr in term.get("matchExpressions") or []:
            if expr.get("operator") != "In":
                continue
            if expr.get("key") == region_label:
                regions = tuple(expr.get("values") or ())
            elif expr.get("key") == product_label and expr.get("values"):
                product = expr["values"][0]
    return Need(resource, count, regions, product)


def _gpu_names(pod: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for container in pod.get("spec", {}).get("containers") or []:
        res = container.get("resources") or {}
        names |= set(res.get("limits") or {}) | set(res.get("requests") or {})
    return {n for n in names if "/" in n}


def _gpu_node(
    node: Mapping[str, Any], region_label: str, product_label: str, tolerated: frozenset[str]
) -> NodeGpus | None:
    """The node's GPUs if it has some and is neither cordoned nor tainted beyond ``tolerated``."""
    meta, spec = node.get("metadata", {}), node.get("spec", {})
    if spec.get("unschedulable"):
        return None
    taints = {
        t.get("key") for t in spec.get("taints") or [] if t.get("effect") != "PreferNoSchedule"
    }
    if taints - tolerated:
        return None
    allocatable = {
        k: _int(v)
        for k, v in (node.get("status", {}).get("allocatable") or {}).items()
        if "/" in k and _int(v) > 0
    }
    if not allocatable:
        return None
    labels = meta.get("labels") or {}
    return NodeGpus(
        meta["name"],
        labels.get(region_label, ""),
        labels.get(product_label, ""),
        allocatable,
        dict(allocatable),
    )


def _age(node: Mapping[str, Any], now: float) -> float | None:
    created = node.get("metadata", {}).get("creationTimestamp")
    try:
        return now - datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def coming_gpus(
    nodes: Iterable[Mapping[str, Any]],
    need: Need,
    *,
    region_label: str,
    product_label: str,
    tolerated_taints: frozenset[str],
    start_seconds: float,
    now: float,
) -> list[tuple[int, float]]:
    """GPU nodes that are starting and could take ``need``: (GPUs, seconds until likely Ready).

    A node is starting when it is not Ready yet (the ``node.kubernetes.io/not-ready``
    taint every new Node carries is tolerated here) and was created less than twice
    ``start_seconds`` ago; one older is taken for broken rather than starting. It is
    expected Ready ``start_seconds`` after its creation. A node that has not reported its
    GPUs yet (the device plugin starts after the kubelet) cannot be counted.
    """
    found: list[tuple[int, float]] = []
    tolerated = tolerated_taints | {NOT_READY}
    for node in nodes:
        if _ready(node) and _gpu_node(node, region_label, product_label, tolerated_taints):
            continue  # counted by free_gpus
        age = _age(node, now)
        if age is None or age > 2 * start_seconds:
            continue
        gpus = _gpu_node(node, region_label, product_label, tolerated)
        if gpus is None or not (gpus.region in need.node_regions and gpus.product == need.product):
            continue
        count = gpus.allocatable.get(need.resource, 0) // max(1, need.count) * need.count
        if count:
            found.append((count, max(0.0, start_seconds - age)))
    return found


def free_gpus(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    *,
    region_label: str,
    product_label: str,
    tolerated_taints: frozenset[str],
    pending: Iterable[Need] = (),
    preemptible_below: int | None = None,
) -> list[NodeGpus]:
    """Schedulable GPU nodes with their free GPUs after every pod and pending need is charged.

    ``preemptible_below``: the priority of the pods that will use the GPUs, if they may
    preempt; pods of lower priority are left uncharged. None: every pod is charged.
    """
    found: dict[str, NodeGpus] = {}
    for node in nodes:
        if _ready(node):
            gpus = _gpu_node(node, region_label, product_label, tolerated_taints)
            if gpus is not None:
                found[gpus.name] = gpus
    unbound: list[Need] = []
    for pod in pods:
        if pod.get("status", {}).get("phase") in _DONE or pod.get("metadata", {}).get(
            "deletionTimestamp"
        ):
            continue
        priority = int(pod.get("spec", {}).get("priority") or 0)
        if preemptible_below is not None and priority < preemptible_below:
            continue
        bound = found.get(pod.get("spec", {}).get("nodeName") or "")
        if bound is not None:
            for name, count in _requests(pod, bound.allocatable).items():
                bound.free[name] -= count
        elif not pod.get("spec", {}).get("nodeName"):
            need = pod_need(pod, region_label, product_label)
            if need is not None:
                unbound.append(need)
    result = sorted(found.values(), key=lambda n: n.name)
    for need in [*unbound, *pending]:
        take(result, need)
    return result


def take(nodes: list[NodeGpus], need: Need) -> str | None:
    """Charge ``need`` to the first node that takes it; return its name, None if none can."""
    for node in nodes:
        if node.takes(need):
            node.free[need.resource] -= need.count
            return node.name
    return None


def slots(nodes: Iterable[NodeGpus], need: Need) -> int:
    """GPUs of ``need``'s kind the matching nodes have in all, busy or not."""
    return sum(
        n.allocatable.get(need.resource, 0)
        for n in nodes
        if n.region in need.node_regions and n.product == need.product
    )
