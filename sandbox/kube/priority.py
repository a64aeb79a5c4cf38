"""PriorityClasses and pod priority, as the API server and its Priority admission plugin do.

- **PriorityClass** (``scheduling.k8s.io/v1``, cluster-scoped): ``value`` must
  decode as an int32 and ``globalDefault`` as a bool (else 400, as the typed
  decoding refuses; a missing one is 0 or false); ``value`` is at most
  1000000000 for a user-defined class; the ``system-`` name prefix is
  reserved for the two system classes, which exist from the start;
  ``preemptionPolicy`` is ``PreemptLowerPriority`` (the default) or
  ``Never``; ``value`` and ``preemptionPolicy`` cannot change in an update;
  only one class may be ``globalDefault`` (403, from the admission plugin).
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
POLICIES = ("PreemptLowerPriority", "Never")  # in ValidatePreemptionPolicy's order
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


def _decode_error(field: str, value: Any, go_type: str) -> ApiError:
    kind = {str: "string", bool: "bool", float: "number", list: "array", dict: "object"}.get(
        type(value), "number"
    )
    return ApiError(
        400,
        "BadRequest",
        'PriorityClass in version "v1" cannot be handled as a PriorityClass: json: cannot '
        f"unmarshal {kind} into Go struct field PriorityClass.{field} of type {go_type}",
    )


def decode_class(obj: Obj) -> None:
    """What decoding into the typed object refuses (400), before any validation."""
    value = obj.get("value", 0)
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**31) <= value < 2**31:
        raise _decode_error("value", value, "int32")
    if not isinstance(obj.get("globalDefault", False), bool):
        raise _decode_error("globalDefault", obj["globalDefault"], "bool")


def default_class(obj: Obj) -> None:
    """Decoding and defaulting: ``value`` and ``globalDefault`` are plain fields (a missing one
    is 0 or false, as the typed object decodes it); ``preemptionPolicy`` defaults."""
    decode_class(obj)
    obj.pop("spec", None)
    obj.setdefault("value", 0)
    obj.setdefault("globalDefault", False)
    obj.setdefault("preemptionPolicy", DEFAULT_POLICY)


def _known_system_class(name: str, value: int, global_default: bool) -> str | None:
    """``IsKnownSystemPriorityClass``: why ``name`` is not one, or None."""
    if name not in SYSTEM_CLASSES:
        return f"{name} is not a known system priority class"
    if SYSTEM_CLASSES[name] != value:
        return f"value of {name} PriorityClass must be {SYSTEM_CLASSES[name]}"
    if global_default:
        return f"globalDefault of {name} PriorityClass must be false"
    return None


def check_class(obj: Obj, causes: list[tuple[str, str]]) -> None:
    """``ValidatePriorityClass``: the fields of one class, alone."""
    name = obj.get("metadata", {}).get("name", "")
    value = obj.get("value", 0)
    if name.startswith("system-"):
        why = _known_system_class(name, value, bool(obj.get("globalDefault")))
        if why:
            causes.append(
                (
                    "metadata.name",
                    "Forbidden: priority class names with 'system-' prefix are reserved for "
                    f"system use only. error: {why}",
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
    policy = obj.get("preemptionPolicy")
    if policy == "":
        causes.append(("preemptionPolicy", "Required value"))
    elif policy not in POLICIES:
        supported = ", ".join(f'"{p}"' for p in POLICIES)
        causes.append(
            ("preemptionPolicy", f'Unsupported value: "{policy}": supported values: {supported}')
        )


def check_class_update(old: Obj, new: Obj) -> list[tuple[str, str]]:
    """``ValidatePriorityClassUpdate``: ``value`` and ``preemptionPolicy`` are immutable."""
    decode_class(new)
    causes = []
    if new.get("value", 0) != old.get("value"):
        causes.append(("value", "Forbidden: may not be changed in an update."))
    policy = new.get("preemptionPolicy", DEFAULT_POLICY)
    if policy != old.get("preemptionPolicy"):
        causes.append(("preemptionPolicy", f'Invalid value: "{policy}": field is immutable'))
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


def keep_on_update(old: Obj, new: Obj) -> None:
    """The plugin on a pod update: a priority the update leaves out is the one admission set."""
    spec, was = new.setdefault("spec", {}), old.get("spec") or {}
    for key in ("priority", "preemptionPolicy"):
        if spec.get(key) is None and was.get(key) is not None:
            spec[key] = was[key]
