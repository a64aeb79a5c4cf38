"""Server-side tables (``meta.k8s.io/v1`` ``Table``), as ``kubectl get`` asks for them.

kubectl prints the columns the API server sends. A server that sends plain
lists gets only names and ages printed, so the emulator renders the columns
kube-apiserver's printers render for pods, nodes, events and claims, and its default
(name, creation time) for the rest. Cells follow the printers' wording
(``1/1``, ``Running``, ``Ready,SchedulingDisabled``, ``RWO``, ages as
``HumanDuration`` writes them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
TABLE_MEDIA = "as=Table"


def wants_table(accept: str) -> bool:
    """Whether the client asked for a Table first (kubectl's Accept header)."""
    first = accept.split(",", 1)[0]
    return TABLE_MEDIA in first and "g=meta.k8s.io" in first


def human_duration(seconds: float) -> str:
    """apimachinery's ``duration.HumanDuration``: 45s, 3m20s, 2h5m, 3d4h, 2y10d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _since(timestamp: str | None, now: datetime) -> str:
    try:
        moment = datetime.fromisoformat(timestamp or "")
    except ValueError:  # a client may write any string into an event's timestamps
        return "<unknown>"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return human_duration((now - moment).total_seconds())


def _age(obj: Obj, now: datetime) -> str:
    return _since(obj["metadata"].get("creationTimestamp"), now)


def _pod_cells(pod: Obj, now: datetime) -> list[Any]:
    status = pod.get("status") or {}
    containers = pod["spec"].get("containers") or []
    reason = status.get("reason") or status.get("phase") or "Unknown"
    ready = restarts = 0
    running = False
    for state in reversed(status.get("containerStatuses") or []):
        restarts += state.get("restartCount", 0)
        current = state.get("state") or {}
        if (waiting := current.get("waiting")) and waiting.get("reason"):
            reason = waiting["reason"]
        elif (done := current.get("terminated")) is not None:
            reason = done.get("reason") or (
                f"Signal:{done['signal']}" if done.get("signal") else f"ExitCode:{done['exitCode']}"
            )
        elif current.get("running") and state.get("ready"):
            running = True
            ready += 1
    if reason == "Completed" and running:
        reason = "Running"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return [
        pod["metadata"]["name"],
        f"{ready}/{len(containers)}",
        reason,
        str(restarts),
        _age(pod, now),
        status.get("podIP") or "<none>",
        pod["spec"].get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        "<none>",
    ]


def _node_cells(node: Obj, now: datetime) -> list[Any]:
    conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
    state = {"True": "Ready", "False": "NotReady"}.get(conditions.get("Ready", ""), "Unknown")
    if node.get("spec", {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    prefix = "node-role.kubernetes.io/"
    labels = node["metadata"].get("labels", {})
    roles = sorted(k.removeprefix(prefix) for k in labels if k.startswith(prefix))
    info = node.get("status", {}).get("nodeInfo") or {}
    addresses = {a["type"]: a["address"] for a in node.get("status", {}).get("addresses", [])}
    return [
        node["metadata"]["name"],
        state,
        ",".join(roles) or "<none>",
        _age(node, now),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP", "<none>"),
        addresses.get("ExternalIP", "<none>"),
        info.get("osImage", "<unknown>"),
        info.get("kernelVersion", "<unknown>"),
        info.get("containerRuntimeVersion", "<unknown>"),
    ]


_ACCESS = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}


def _claim_cells(claim: Obj, now: datetime) -> list[Any]:
    spec, status = claim.get("spec") or {}, claim.get("status") or {}
    bound = status.get("phase") == "Bound"
    return [
        claim["metadata"]["name"],
        status.get("phase", "Pending"),
        spec.get("volumeName", ""),
        (status.get("capacity") or {}).get("storage", "") if bound else "",
        ",".join(_ACCESS.get(m, m) for m in status.get("accessModes") or []) if bound else "",
        spec.get("storageClassName") or "<unset>",
        "<unset>",
        _age(claim, now),
        spec.get("volumeMode", "Filesystem"),
    ]


def _priority_class_cells(pc: Obj, now: datetime) -> list[Any]:
    return [
        pc["metadata"]["name"],
        pc.get("value", 0),
        bool(pc.get("globalDefault")),
        _age(pc, now),
        pc.get("preemptionPolicy", ""),
    ]


def _event_cells(event: Obj, now: datetime) -> list[Any]:
    involved = event.get("involvedObject") or {}
    source = event.get("source") or {}
    first = event.get("firstTimestamp") or event["metadata"].get("creationTimestamp")
    return [
        _since(event.get("lastTimestamp") or first, now),
        event.get("type", ""),
        event.get("reason", ""),
        f"{involved.get('kind', '').lower()}/{involved.get('name', '')}",
        involved.get("fieldPath", ""),
        ", ".join(v for v in (source.get("component"), source.get("host")) if v),
        (event.get("message") or "").strip(),
        _since(first, now),
        event.get("count", 1),
        event["metadata"]["name"],
    ]


def _default_cells(obj: Obj, now: datetime) -> list[Any]:
    return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp")]


Column = tuple[str, str, int]  # name, type, priority (1: shown with -o wide)
_PRINTERS: dict[str, tuple[list[Column], Callable[[Obj, datetime], list[Any]]]] = {
    "pods": (
        [("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0),
         ("Restarts", "string", 0), ("Age", "string", 0), ("IP", "string", 1),
         ("Node", "string", 1), ("Nominated Node", "string", 1),
         ("Readiness Gates", "string", 1)],
        _pod_cells,
    ),
    "nodes": (
        [("Name", "string", 0), ("Status", "string", 0), ("Roles", "string", 0),
         ("Age", "string", 0), ("Version", "string", 0), ("Internal-IP", "string", 1),
         ("External-IP", "string", 1), ("OS-Image", "string", 1),
         ("Kernel-Version", "string", 1), ("Container-Runtime", "string", 1)],
        _node_cells,
    ),
    "events": (
        [("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0),
         ("Object", "string", 0), ("Subobject", "string", 1), ("Source", "string", 1),
         ("Message", "string", 0), ("First Seen", "string", 1), ("Count", "integer", 1),
         ("Name", "string", 1)],
        _event_cells,
    ),
    "persistentvolumeclaims": (
        [("Name", "string", 0), ("Status", "string", 0), ("Volume", "string", 0),
         ("Capacity", "string", 0), ("Access Modes", "string", 0),
         ("StorageClass", "string", 0), ("VolumeAttributesClass", "string", 0),
         ("Age", "string", 0), ("VolumeMode", "string", 1)],
        _claim_cells,
    ),
    "priorityclasses": (
        [("Name", "string", 0), ("Value", "integer", 0), ("Global-Default", "boolean", 0),
         ("Age", "string", 0), ("PreemptionPolicy", "string", 0)],
        _priority_class_cells,
    ),
}  # fmt: skip
_DEFAULT: tuple[list[Column], Callable[[Obj, datetime], list[Any]]] = (
    [("Name", "string", 0), ("Created At", "date", 0)],
    _default_cells,
)


def table(plural: str, objects: Iterable[Obj], list_meta: Obj, include: str) -> Obj:
    """The Table of ``objects``; ``include`` is the request's ``includeObject``
    (``None``, ``Metadata``, the default, or ``Object``)."""
    columns, cells = _PRINTERS.get(plural, _DEFAULT)
    now = datetime.now(UTC)
    rows = []
    for obj in objects:
        row: Obj = {"cells": cells(obj, now)}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    definitions = [
        {"name": n, "type": t, "format": "name" if n == "Name" else "", "priority": p}
        for n, t, p in columns
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    }
