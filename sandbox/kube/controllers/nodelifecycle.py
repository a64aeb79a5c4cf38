"""The node lifecycle controller: a node's taints follow its Ready condition and heartbeats.

As kube-controller-manager's ``nodelifecycle`` controller does:

- a node whose ``Ready`` condition is ``True`` carries neither the
  ``node.kubernetes.io/not-ready`` nor the ``node.kubernetes.io/unreachable``
  taint (so the not-ready taint every new Node gets from admission is lifted
  once its kubelet reports Ready);
- ``Ready=False`` gives the not-ready taint, ``NoSchedule`` and ``NoExecute``;
- a node that stops heartbeating (neither its ``Ready`` condition's
  ``lastHeartbeatTime`` nor its Lease's ``renewTime`` changes) for the grace
  period has its conditions set to ``Unknown`` and the unreachable taints.

Heartbeats are judged by when the controller *saw* them change, not by the
node's clock, as the real controller does. Not emulated: eviction of pods
from a node under a ``NoExecute`` taint once their toleration runs out.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from ..admission import NOT_READY, UNREACHABLE
from ..store import Change, Obj, Store, now_iso

GRACE_SECONDS = 50.0
"""``--node-monitor-grace-period`` (its default since Kubernetes 1.32)."""
STARTUP_GRACE_SECONDS = 60.0
"""``--node-startup-grace-period``: for a node that never posted its status."""
LEASE_NAMESPACE = "kube-node-lease"
MONITOR_PERIOD = 1.0
"""Seconds between two looks at every node while other objects change (the real
controller's ``--node-monitor-period`` is 5 s): a pod's change says nothing of a node."""
_MANAGED = {NOT_READY, UNREACHABLE}


def _ready(node: Obj) -> dict[str, Any] | None:
    for condition in node.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return None


def desired_taints(status: str | None, since: str) -> list[dict[str, Any]]:
    """The managed taints for a Ready condition status (None: never reported)."""
    if status == "True":
        return []
    key = NOT_READY if status == "False" else UNREACHABLE
    return [
        {"key": key, "effect": "NoSchedule"},
        {"key": key, "effect": "NoExecute", "timeAdded": since},
    ]


class NodeLifecycleController:
    def __init__(
        self, grace: float = GRACE_SECONDS, startup_grace: float = STARTUP_GRACE_SECONDS
    ) -> None:
        self.grace = grace
        self.startup_grace = startup_grace
        self._probes: dict[str, tuple[Any, float]] = {}
        """Per node uid: the heartbeat last seen, and when it was seen to change."""
        self._last_look = float("-inf")

    def __call__(self, store: Store, changes: list[Change]) -> bool:
        now = time.monotonic()
        if (
            changes
            and now - self._last_look < MONITOR_PERIOD
            and not any(c.resource in ("nodes", "leases") for c in changes)
        ):
            return False
        self._last_look = now
        live = set()
        for node in list(store.list("nodes", None)):
            uid = node["metadata"]["uid"]
            live.add(uid)
            ready = _ready(node)
            lease = store.get("leases", LEASE_NAMESPACE, node["metadata"]["name"]) or {}
            beat = (
                (ready or {}).get("lastHeartbeatTime"),
                (lease.get("spec") or {}).get("renewTime"),
            )
            seen, when = self._probes.get(uid, (None, now))
            if uid not in self._probes or beat != seen:
                when = now
            self._probes[uid] = (beat, when)
            grace = self.grace if ready is not None else self.startup_grace
            status = ready.get("status") if ready else None
            new = copy.deepcopy(node)
            if now - when > grace and status != "Unknown":
                self._mark_unknown(new, never=ready is None)
                status = "Unknown"
            self._set_taints(new, status)
            if new != node:
                store.update("nodes", new, node)
        for uid in set(self._probes) - live:
            del self._probes[uid]
        return False

    @staticmethod
    def _mark_unknown(node: Obj, *, never: bool) -> None:
        reason, message = (
            ("NodeStatusNeverUpdated", "Kubelet never posted node status.")
            if never
            else ("NodeStatusUnknown", "Kubelet stopped posting node status.")
        )
        stamp = now_iso()
        conditions = node.setdefault("status", {}).setdefault("conditions", [])
        if never:
            conditions.append({"type": "Ready", "lastHeartbeatTime": None})
        for condition in conditions:
            condition.update(
                status="Unknown",
                reason=reason,
                message=message,
                lastTransitionTime=stamp,
            )

    @staticmethod
    def _set_taints(node: Obj, status: str | None) -> None:
        if status is None:
            return  # within its startup grace, a node keeps the taint admission gave it
        spec = node.setdefault("spec", {})
        taints = spec.get("taints") or []
        kept = [t for t in taints if t.get("key") not in _MANAGED]
        wanted = desired_taints(status, now_iso())
        # Keep a managed taint that is still wanted as it is (its timeAdded included).
        current = [t for t in taints if t.get("key") in _MANAGED]
        for taint in wanted:
            match = next(
                (
                    t
                    for t in current
                    if t.get("key") == taint["key"] and t.get("effect") == taint["effect"]
                ),
                None,
            )
            kept.append(match or taint)
        if kept:
            spec["taints"] = kept
        else:
            spec.pop("taints", None)
