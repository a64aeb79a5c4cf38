"""PriorityClasses and pod priority, as the API server and its Priority admission plugin do.

- **PriorityClass** (``scheduling.k8s.io/v1``, cluster-scoped): ``value`` is
  required and at most 1000000000 for a user-defined class; the ``system-``
  name prefix is reserved; ``preemptionPolicy`` is ``PreemptLowerPriority``
  (the default) or ``Never``; ``value`` and ``preemptionPolicy`` cannot
  change in an update; only one class may be ``globalDefault``. The two
  system classes a real cluster bootstraps exist from the start.
- **Pods** on create: ``priorityClassName`` resolves to ``spec.priority`` and
  ``spec.preemptionPolicy``; an unknown name is refused with 403 Forbidden,
  and so is a ``spec.priority`` that differs from the one computed; a pod
  with no class gets the global default's (name, value and policy), or
  priority 0.

Refused as the real server words it; what is not emulated: the
``PodPriority``-related quota scopes and the critical-pod rules for the
``kube-system`` namespace.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ApiError
from .store import Obj, Store

HIGHEST_USER_DEFINABLE = 1_000_000_000
SYSTEM_CLASSES = {"system-cluster-critical": 2_000_000_000, "system-node-critical": 2_000_001_000}
POLICIES = ("Never", "PreemptLowerPriority")
DEFAULT_POLICY = "PreemptLowerPriority"


def system_classes() -> list[Obj]:
    """The classes a real API server creates at start-up."""
    return [
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "globalDefault": False,
            "preemptionPolicy": DEFAULT_POLICY,
            "description": "Used for system critical pods that must not be moved from their "
            "current node."
            if name == "system-node-critical"
            else "Used for system critical pods that must run in the cluster, but can be "
            "moved to another node if necessary.",
        }
        for name, value in SYSTEM_CLASSES.items()
    ]


def default_class(obj: Obj) -> None:
    obj.pop("spec", None)
    obj.setdefault("preemptionPolicy", DEFAULT_POLICY)


def check_class(obj: Obj, causes: list[tuple[str, str]]) -> None:
    """``ValidatePriorityClass``: the fields of one class, alone."""
    name = obj.get("metadata", {}).get("name", "")
    value = obj.get("value")
    if value is None:
        causes.append(("value", "Required value"))
    elif not isinstance(value, int) or isinstance(value, bool) or not -(2**31) <= value < 2**31:
        causes.append(("value", f"Invalid value: {value!r}: must be a 32-bit integer"))
    elif name.startswith("system-"):
        if SYSTEM_CLASSES.get(name) != value:
            causes.append(
                (
                    "metadata.name",
                    f"Invalid value: \"{name}\": priority class names with 'system-' prefix "
                    "are reserved",
                )
            )
    elif value > HIGHEST_USER_DEFINABLE:
        causes.append(
            (
                "value",
                f"Forbidden: maximum allowed value of a user defined priority is "
                f"{HIGHEST_USER_DEFINABLE}",
            )
        )
    if not isinstance(obj.get("globalDefault", False), bool):
        causes.append(("globalDefault", f"Invalid value: {obj['globalDefault']!r}: must be a bool"))
    policy = obj.get("preemptionPolicy")
    if policy not in POLICIES:
        supported = ", ".join(f'"{p}"' for p in POLICIES)
        causes.append(
            ("preemptionPolicy", f'Unsupported value: "{policy}": supported values: {supported}')
        )


def check_class_update(old: Obj, new: Obj) -> list[tuple[str, str]]:
    causes = []
    if new.get("value") != old.get("value"):
        causes.append(("value", "Forbidden: may not be changed in an update."))
    if new.get("preemptionPolicy") != old.get("preemptionPolicy"):
        causes.append(("preemptionPolicy", "Invalid value: field is immutable"))
    return causes


def check_single_default(store: Store, obj: Obj) -> None:
    """The admission plugin's rule: at most one class has ``globalDefault: true``."""
    if not obj.get("globalDefault"):
        return
    for other in store.list("priorityclasses", None):
        if other.get("globalDefault") and other["metadata"]["name"] != obj["metadata"]["name"]:
            name = obj["metadata"]["name"]
            raise ApiError(
                403,
                "Forbidden",
                f'priorityclasses.scheduling.k8s.io "{name}" is forbidden: PriorityClass '
                f"{other['metadata']['name']} is already marked as default. Only one default "
                "can exist",
                {"name": name, "group": "scheduling.k8s.io", "kind": "priorityclasses"},
            )


def _forbidden(pod: Obj, message: str) -> ApiError:
    name = pod["metadata"].get("name", "")
    return ApiError(
        403,
        "Forbidden",
        f'pods "{name}" is forbidden: {message}',
        {"name": name, "kind": "pods"},
    )


def admit_pod(store: Store, pod: Obj) -> Obj:
    """The Priority admission plugin on a pod create: resolve its class into its spec."""
    pod = copy.deepcopy(pod)
    spec = pod.setdefault("spec", {})
    name = spec.get("priorityClassName") or ""
    if name:
        found = store.get("priorityclasses", "", name)
        if found is None:
            raise _forbidden(pod, f"no PriorityClass with name {name} was found")
        value, policy = found["value"], found.get("preemptionPolicy", DEFAULT_POLICY)
    else:
        classes = store.list("priorityclasses", None)
        default = next((c for c in classes if c.get("globalDefault")), None)
        value = default["value"] if default else 0
        policy = default.get("preemptionPolicy", DEFAULT_POLICY) if default else DEFAULT_POLICY
        if default:
            spec["priorityClassName"] = default["metadata"]["name"]
    if spec.get("priority") is not None and spec["priority"] != value:
        raise _forbidden(
            pod,
            f"the integer value of priority ({spec['priority']}) must not be provided in pod "
            f"spec; priority admission controller computed {value} from the given "
            "PriorityClass name",
        )
    if spec.get("preemptionPolicy") not in (None, policy):
        raise _forbidden(
            pod,
            f"the string value of PreemptionPolicy ({spec['preemptionPolicy']}) must not be "
            f"provided in pod spec; priority admission controller computed {policy} from the "
            "given PriorityClass name",
        )
    spec["priority"] = value
    spec["preemptionPolicy"] = policy
    return pod


def of(pod: Any) -> int:
    """A pod's priority as admission set it (0 for a pod stored without one)."""
    return int((pod.get("spec") or {}).get("priority") or 0)
