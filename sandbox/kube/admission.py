"""Validation and defaulting, as the real API server does on create and update.

Only what clients meet in practice: name and label syntax, required pod and
PVC fields, pod spec immutability, and the defaults a real server adds (pod
restart/DNS policy, scheduler name, grace period, the not-ready/unreachable
tolerations of the DefaultTolerationSeconds admission plugin, QoS class,
service cluster IPs). Messages follow apimachinery's wording so client code
that matches on them behaves the same against a real cluster.
"""

from __future__ import annotations

import base64
import copy
import itertools
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from sovereign_hub.policy.quantity import QuantityError, parse_quantity

from . import priority, schemas
from .store import RESOURCES, Obj

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character"
)
# Resources whose names must be DNS labels rather than subdomains.
_LABEL_NAMED = {"services", "namespaces"}
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")
_cluster_ips = (f"10.96.{i // 250}.{i % 250 + 1}" for i in itertools.count())


class Invalid(Exception):
    """An object the API server refuses with 422; ``causes`` are (field, message) pairs."""

    def __init__(self, kind: str, name: str, causes: list[tuple[str, str]]) -> None:
        self.kind = kind
        self.name = name
        self.causes = causes
        detail = ", ".join(f"{f}: {m}" for f, m in causes)
        super().__init__(f'{kind} "{name}" is invalid: {detail}')


def _check_name(resource: str, name: str, causes: list[tuple[str, str]]) -> None:
    if resource in _LABEL_NAMED:
        if len(name) > 63 or not DNS1123_LABEL.match(name):
            causes.append(("metadata.name", f'Invalid value: "{name}": {_LABEL_MSG}'))
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        causes.append(("metadata.name", f'Invalid value: "{name}": {_SUBDOMAIN_MSG}'))


def _check_labels(meta: dict[str, Any], causes: list[tuple[str, str]]) -> None:
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, name = key.rpartition("/")
        if (
            not name
            or len(name) > 63
            or not LABEL_NAME.match(name)
            or (prefix and not DNS1123_SUBDOMAIN.match(prefix))
        ):
            causes.append(("metadata.labels", f'Invalid value: "{key}": name part must be valid'))
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            causes.append(
                (
                    "metadata.labels",
                    f'Invalid value: "{value}": a valid label must be an empty '
                    "string or consist of alphanumeric characters, '-', '_' or '.'",
                )
            )


def _check_owner_references(meta: dict[str, Any], causes: list[tuple[str, str]]) -> None:
    """``ValidateOwnerReferences``: every reference names its owner fully; one controller."""
    refs = meta.get("ownerReferences") or []
    for ref in refs:
        for key, words in (
            ("apiVersion", "version must not be empty"),
            ("kind", "kind must not be empty"),
            ("name", "name must not be empty"),
            ("uid", "uid must not be empty"),
        ):
            if not ref.get(key):
                causes.append((f"metadata.ownerReferences.{key}", f'Invalid value: "": {words}'))
    if sum(1 for ref in refs if ref.get("controller")) > 1:
        causes.append(
            (
                "metadata.ownerReferences",
                "Invalid value: only one reference can have Controller set to true",
            )
        )


def _check_mounts(
    path: str, container: dict[str, Any], volumes: set[str], causes: list[tuple[str, str]]
) -> None:
    seen: set[str] = set()
    for j, mount in enumerate(container.get("volumeMounts") or []):
        where = f"{path}.volumeMounts[{j}]"
        if mount.get("name") not in volumes:
            causes.append((f"{where}.name", f'Not found: "{mount.get("name", "")}"'))
        mount_path = mount.get("mountPath", "")
        if not mount_path:
            causes.append((f"{where}.mountPath", "Required value"))
        elif mount_path in seen:
            causes.append((f"{where}.mountPath", f'Invalid value: "{mount_path}": must be unique'))
        seen.add(mount_path)
        sub = mount.get("subPath", "")
        if sub.startswith("/"):
            causes.append((f"{where}.subPath", f'Invalid value: "{sub}": must be a relative path'))
        elif ".." in sub.split("/"):
            causes.append((f"{where}.subPath", f"Invalid value: \"{sub}\": must not contain '..'"))


# RelaxedEnvironmentVariableValidation (GA in 1.34): any printable ASCII but '='.
_ENV_NAME = re.compile(r"^[\x20-\x3c\x3e-\x7e]+$")
_NATIVE_RESOURCES = ("cpu", "memory", "ephemeral-storage", "pods")


def _overcommittable(name: str) -> bool:
    """Native resources (and hugepages) may be overcommitted; extended ones (a domain-prefixed
    name such as nvidia.com/gpu) may not."""
    return name in _NATIVE_RESOURCES or name.startswith(("hugepages-", "kubernetes.io/"))


def _check_resources(path: str, container: dict[str, Any], causes: list[tuple[str, str]]) -> None:
    """ValidateResourceRequirements: quantities parse, requests do not exceed limits, and an
    extended resource is a whole number whose request equals its limit."""
    resources = container.get("resources") or {}
    parsed: dict[str, dict[str, Decimal]] = {}
    for kind in ("limits", "requests"):
        parsed[kind] = {}
        for name, value in (resources.get(kind) or {}).items():
            where = f"{path}.resources.{kind}[{name}]"
            try:
                parsed[kind][name] = parse_quantity(str(value))
            except QuantityError:
                causes.append(
                    (where, f'Invalid value: "{value}": quantities must match the regular '
                     "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
                )  # fmt: skip
                continue
            if not _overcommittable(name) and parsed[kind][name] != int(parsed[kind][name]):
                causes.append((where, f'Invalid value: "{value}": must be an integer'))
    limits, requests = parsed["limits"], parsed["requests"]
    for name, request in requests.items():
        limit = limits.get(name)
        where = f"{path}.resources.requests[{name}]"
        if _overcommittable(name):
            if limit is not None and request > limit:
                causes.append(
                    (where, f'Invalid value: "{resources["requests"][name]}": must be less than '
                     f"or equal to {name} limit of {resources['limits'][name]}")
                )  # fmt: skip
        elif limit is None:
            causes.append((f"{path}.resources.limits", "Required value: Limit must be set for "
                           "non overcommitable resources"))  # fmt: skip
        elif request != limit:
            causes.append(
                (where, f'Invalid value: "{resources["requests"][name]}": must be equal to '
                 f"{name} limit of {resources['limits'][name]}")
            )  # fmt: skip


def _check_env(path: str, container: dict[str, Any], causes: list[tuple[str, str]]) -> None:
    for k, var in enumerate(container.get("env") or []):
        name = var.get("name", "")
        if not _ENV_NAME.match(name):
            causes.append(
                (f"{path}.env[{k}].name", f'Invalid value: "{name}": a valid environment variable '
                 "name must consist only of printable ASCII characters other than '='")
            )  # fmt: skip


def check_pod_spec(spec: dict[str, Any], causes: list[tuple[str, str]], at: str = "spec") -> None:
    """ValidatePodSpec, for a pod (``at`` "spec") or a workload's template."""
    volumes: set[str] = set()
    for i, volume in enumerate(spec.get("volumes") or []):
        vname = volume.get("name", "")
        if not DNS1123_LABEL.match(vname):
            causes.append((f"{at}.volumes[{i}].name", f'Invalid value: "{vname}": {_LABEL_MSG}'))
        elif vname in volumes:
            causes.append((f"{at}.volumes[{i}].name", f'Duplicate value: "{vname}"'))
        volumes.add(vname)
    for group in ("containers", "initContainers"):
        for i, container in enumerate(spec.get(group) or []):
            _check_mounts(f"{at}.{group}[{i}]", container, volumes, causes)
            _check_resources(f"{at}.{group}[{i}]", container, causes)
            _check_env(f"{at}.{group}[{i}]", container, causes)
    containers = spec.get("containers") or []
    if not containers:
        causes.append((f"{at}.containers", "Required value"))
    seen: set[str] = set()
    for i, container in enumerate(containers):
        name = container.get("name", "")
        if not name:
            causes.append((f"{at}.containers[{i}].name", "Required value"))
        elif not DNS1123_LABEL.match(name):
            causes.append((f"{at}.containers[{i}].name", f'Invalid value: "{name}": {_LABEL_MSG}'))
        elif name in seen:
            causes.append((f"{at}.containers[{i}].name", f'Duplicate value: "{name}"'))
        seen.add(name)
        if not container.get("image"):
            causes.append((f"{at}.containers[{i}].image", "Required value"))


def _supported(value: Any, allowed: tuple[str, ...]) -> str:
    listed = ", ".join(f'"{a}"' for a in allowed)
    return f'Unsupported value: "{value}": supported values: {listed}'


def _check_network_policy(spec: dict[str, Any], causes: list[tuple[str, str]]) -> None:
    """What a kube-apiserver refuses in a NetworkPolicy that the pod network would
    otherwise have to guess at: policy types, protocols, port ranges."""
    for i, kind in enumerate(spec.get("policyTypes") or []):
        if kind not in ("Ingress", "Egress"):
            causes.append((f"spec.policyTypes[{i}]", _supported(kind, ("Egress", "Ingress"))))
    for direction in ("ingress", "egress"):
        for r, rule in enumerate(spec.get(direction) or []):
            for j, port in enumerate(rule.get("ports") or []):
                at = f"spec.{direction}[{r}].ports[{j}]"
                protocol = port.get("protocol", "TCP")
                if protocol not in ("SCTP", "TCP", "UDP"):
                    causes.append((f"{at}.protocol", _supported(protocol, ("SCTP", "TCP", "UDP"))))
                end, number = port.get("endPort"), port.get("port")
                if end is None:
                    continue
                if not isinstance(number, int):
                    problem = "may not be specified when `port` is non-numeric"
                    causes.append((f"{at}.endPort", f"Invalid value: {end}: {problem}"))
                elif end < number:
                    problem = "must be greater than or equal to `port`"
                    causes.append((f"{at}.endPort", f"Invalid value: {end}: {problem}"))


def validate(resource: str, kind: str, obj: Obj, more: Sequence[tuple[str, str]] = ()) -> None:
    """Refuse ``obj`` with every problem at once: its metadata's, its kind's and ``more``
    (what :mod:`.workloads` found in a workload, a budget or an RBAC object)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes: list[tuple[str, str]] = []
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    else:
        _check_name(resource, name, causes)
    _check_labels(meta, causes)
    _check_owner_references(meta, causes)
    spec = obj.get("spec") or {}
    if resource == "pods":
        check_pod_spec(spec, causes)
    elif resource == "persistentvolumeclaims":
        if not spec.get("accessModes"):
            causes.append(
                ("spec.accessModes", "Required value: at least 1 access mode is required")
            )
        if not (spec.get("resources") or {}).get("requests", {}).get("storage"):
            causes.append(("spec.resources[storage]", "Required value"))
    elif resource == "networkpolicies":
        _check_network_policy(spec, causes)
    elif resource == "priorityclasses":
        priority.check_class(obj, causes)
    elif resource == "leases":
        for field, least, words in (
            ("leaseDurationSeconds", 1, "greater than 0"),
            ("leaseTransitions", 0, "greater than or equal to 0"),
        ):
            value = spec.get(field)
            if value is not None and (not isinstance(value, int) or value < least):
                causes.append((f"spec.{field}", f"Invalid value: {value}: must be {words}"))
    causes += more
    if causes:
        raise Invalid(kind, name, causes)


def _qos(containers: list[dict[str, Any]]) -> str:
    requests = [c.get("resources", {}).get("requests") or {} for c in containers]
    limits = [c.get("resources", {}).get("limits") or {} for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        lim.get(r) and req.get(r) == lim.get(r)
        for req, lim in zip(requests, limits, strict=True)
        for r in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _has_spec(resource: str) -> bool:
    served = RESOURCES[resource]
    return schemas.has_field(schemas.of(served.group, "v1", served.kind), "spec")


def default_pod_spec(spec: dict[str, Any]) -> None:
    """SetDefaults_PodSpec and SetDefaults_Container: what a pod and a workload's pod
    template both get (the admission plugins' tolerations and a pod's requests from its
    limits are a pod's alone)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        image = container.get("image", "")
        tagged = "@" in image or ":" in image.rsplit("/", 1)[-1]
        latest = image.endswith(":latest") or not tagged
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("resources", {})


def default(resource: str, obj: Obj) -> Obj:
    """Fill in what the API server would on create."""
    obj = copy.deepcopy(obj)
    spec = obj.setdefault("spec", {}) if _has_spec(resource) else {}
    if resource == "pods":
        default_pod_spec(spec)
        spec.setdefault("serviceAccountName", spec.get("serviceAccount", "default"))
        tolerations = spec.setdefault("tolerations", [])
        for taint in (NOT_READY, UNREACHABLE):
            if not any(t.get("key") == taint for t in tolerations):
                tolerations.append(
                    {
                        "key": taint,
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 300,
                    }
                )
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            resources = container.setdefault("resources", {})
            limits = resources.get("limits") or {}
            if limits:
                requests = resources.setdefault("requests", {})
                for key, value in limits.items():
                    requests.setdefault(key, value)
        obj["status"] = {"phase": "Pending", "qosClass": _qos(spec.get("containers", []))}
    elif resource == "persistentvolumeclaims":
        spec.setdefault("volumeMode", "Filesystem")
        obj["status"] = {"phase": "Pending"}
    elif resource == "services":
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec.get("clusterIP") != "None":
            spec.setdefault("clusterIP", next(_cluster_ips))
        for port in spec.get("ports", []):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        obj["status"] = {"loadBalancer": {}}
    elif resource == "nodes":
        # The TaintNodesByCondition admission plugin: every new Node starts not ready for
        # scheduling; the node lifecycle controller lifts it once the node reports Ready.
        taints = spec.setdefault("taints", [])
        if not any(t.get("key") == NOT_READY and t.get("effect") == "NoSchedule" for t in taints):
            taints.append({"key": NOT_READY, "effect": "NoSchedule"})
    elif resource == "priorityclasses":
        priority.default_class(obj)
    elif resource == "namespaces":
        spec.setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}
    elif resource == "secrets":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    return obj


def _check_spec_unchanged(
    kind: str, old: Obj, new: Obj, masked: Callable[[dict[str, Any]], Any], message: str
) -> None:
    """Refuse an update that changes the spec outside what ``masked`` leaves out."""
    if masked(old.get("spec") or {}) != masked(new.get("spec") or {}):
        raise Invalid(kind, old["metadata"]["name"], [("spec", f"Forbidden: {message}")])


def check_claim_update(old: Obj, new: Obj) -> None:
    """A claim's spec is immutable after creation but for its requested storage and its
    volumeAttributesClassName (and the volume the binder names)."""
    mutable = ("resources", "volumeAttributesClassName", "volumeName")
    _check_spec_unchanged(
        "PersistentVolumeClaim",
        old,
        new,
        lambda spec: {k: v for k, v in spec.items() if k not in mutable},
        "spec is immutable after creation except resources.requests and "
        "volumeAttributesClassName for bound claims",
    )


def check_pod_update(old: Obj, new: Obj) -> None:
    """Pod specs are immutable but for a few fields, as in Kubernetes."""

    def masked(spec: dict[str, Any]) -> dict[str, Any]:
        spec = {k: v for k, v in spec.items() if k not in _POD_MUTABLE}
        spec["containers"] = [
            {k: v for k, v in c.items() if k != "image"} for c in spec.get("containers", [])
        ]
        return spec

    _check_spec_unchanged(
        "Pod",
        old,
        new,
        masked,
        "pod updates may not change fields other than `spec.containers[*].image`, "
        "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing "
        "tolerations) or `spec.terminationGracePeriodSeconds`",
    )
