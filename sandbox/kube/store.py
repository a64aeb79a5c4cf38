"""The emulated API server's state: objects, resource versions and watch history.

One counter versions every change, as etcd's revision does. Each change is
kept in a bounded history so a watch can resume from a ``resourceVersion``;
a resume from before the history answers ``410 Expired``, as a real API
server does once etcd has compacted. Watches with selectors follow the real
server's filtered semantics: an object that stops matching is sent as
``DELETED`` and one that starts matching as ``ADDED``.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .selectors import Predicate

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Resource:
    """A REST resource the emulator serves."""

    plural: str
    kind: str
    namespaced: bool = True
    subresources: frozenset[str] = frozenset()
    short: str = ""
    group: str = ""
    """API group; empty for the core group served under /api/v1."""

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"


RESOURCES: dict[str, Resource] = {
    r.plural: r
    for r in (
        Resource(
            "pods", "Pod", subresources=frozenset({"status", "binding", "log", "exec"}), short="po"
        ),
        Resource(
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            subresources=frozenset({"status"}),
            short="pvc",
        ),
        Resource("services", "Service", subresources=frozenset({"status"}), short="svc"),
        Resource("endpoints", "Endpoints", short="ep"),
        Resource("secrets", "Secret"),
        Resource("configmaps", "ConfigMap", short="cm"),
        Resource("serviceaccounts", "ServiceAccount", short="sa"),
        Resource("events", "Event", short="ev"),
        Resource("nodes", "Node", namespaced=False, subresources=frozenset({"status"}), short="no"),
        Resource(
            "namespaces",
            "Namespace",
            namespaced=False,
            subresources=frozenset({"status"}),
            short="ns",
        ),
        Resource("leases", "Lease", group="coordination.k8s.io"),
        Resource("networkpolicies", "NetworkPolicy", group="networking.k8s.io", short="netpol"),
        Resource(
            "ingresses",
            "Ingress",
            group="networking.k8s.io",
            subresources=frozenset({"status"}),
            short="ing",
        ),
        *(
            Resource(plural, kind, group="apps", subresources=frozenset({"status"}), short=short)
            for plural, kind, short in (
                ("deployments", "Deployment", "deploy"),
                ("daemonsets", "DaemonSet", "ds"),
                ("statefulsets", "StatefulSet", "sts"),
                ("replicasets", "ReplicaSet", "rs"),
            )
        ),
        Resource("jobs", "Job", group="batch", subresources=frozenset({"status"})),
        Resource(
            "cronjobs", "CronJob", group="batch", subresources=frozenset({"status"}), short="cj"
        ),
        Resource(
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            group="policy",
            subresources=frozenset({"status"}),
            short="pdb",
        ),
        *(
            Resource(plural, kind, namespaced=namespaced, group="rbac.authorization.k8s.io")
            for plural, kind, namespaced in (
                ("roles", "Role", True),
                ("rolebindings", "RoleBinding", True),
                ("clusterroles", "ClusterRole", False),
                ("clusterrolebindings", "ClusterRoleBinding", False),
            )
        ),
        Resource(
            "priorityclasses",
            "PriorityClass",
            namespaced=False,
            short="pc",
            group="scheduling.k8s.io",
        ),
    )
}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Change:
    rv: int
    resource: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    previous: Obj | None


class Expired(Exception):
    """The requested resourceVersion is older than the retained history."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")


@dataclass(eq=False)
class Watcher:
    resource: str
    namespace: str | None
    predicate: Predicate
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)

    def translate(self, change: Change) -> tuple[str, Obj] | None:
        """The event this watcher sees for ``change``, if any (filtered-watch rules)."""
        if change.resource != self.resource:
            return None
        meta = change.obj["metadata"]
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return None
        now = self.predicate(change.obj)
        if change.type == "DELETED":
            return ("DELETED", change.obj) if now else None
        before = change.previous is not None and self.predicate(change.previous)
        if change.type == "ADDED" or (now and not before):
            return ("ADDED", change.obj) if now else None
        if before and not now:
            return ("DELETED", change.obj)
        return ("MODIFIED", change.obj) if now else None


class Store:
    """Objects by (resource, namespace, name), with versioned change history."""

    def __init__(self, history: int = 10_000) -> None:
        self.rv = 0
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {r: {} for r in RESOURCES}
        self.history: deque[Change] = deque(maxlen=history)
        self.watchers: set[Watcher] = set()
        self.listeners: set[asyncio.Queue[Change]] = set()
        """Every change, for the emulated controllers (:mod:`.controllers`)."""

    # -- reading -----------------------------------------------------------
    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        return self.objects[resource].get((namespace, name))

    def list(self, resource: str, namespace: str | None) -> Iterator[Obj]:
        for (ns, _), obj in sorted(self.objects[resource].items()):
            if namespace is None or ns == namespace:
                yield obj

    # -- writing -----------------------------------------------------------
    def _record(self, resource: str, type_: str, obj: Obj, previous: Obj | None) -> None:
        change = Change(self.rv, resource, type_, copy.deepcopy(obj), previous)
        self.history.append(change)
        for watcher in self.watchers:
            watcher.queue.put_nowait(change)
        for listener in self.listeners:
            listener.put_nowait(change)

    def _bump(self, obj: Obj) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def create(self, resource: str, obj: Obj) -> Obj:
        meta = obj["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_iso())
        meta.setdefault("generation", 1)
        self._bump(obj)
        self.objects[resource][(meta.get("namespace", ""), meta["name"])] = obj
        self._record(resource, "ADDED", obj, None)
        return obj

    def update(self, resource: str, obj: Obj, previous: Obj) -> Obj:
        if obj.get("spec") != previous.get("spec"):
            obj["metadata"]["generation"] = previous["metadata"].get("generation", 1) + 1
        self._bump(obj)
        meta = obj["metadata"]
        self.objects[resource][(meta.get("namespace", ""), meta["name"])] = obj
        self._record(resource, "MODIFIED", obj, copy.deepcopy(previous))
        return obj

    def delete(self, resource: str, obj: Obj) -> Obj:
        meta = obj["metadata"]
        self.objects[resource].pop((meta.get("namespace", ""), meta["name"]), None)
        self._bump(obj)
        self._record(resource, "DELETED", obj, None)
        return obj

    # -- watching ----------------------------------------------------------
    def since(self, rv: int) -> list[Change]:
        """Changes after ``rv``; raises :class:`Expired` if the history no longer reaches it."""
        if rv >= self.rv:
            return []
        oldest = self.history[0].rv if self.history else self.rv + 1
        if rv < oldest - 1:
            raise Expired(rv, oldest)
        return [c for c in self.history if c.rv > rv]

    def watch(self, resource: str, namespace: str | None, predicate: Predicate) -> Watcher:
        watcher = Watcher(resource, namespace, predicate)
        self.watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def subscribe(self) -> asyncio.Queue[Change]:
        queue: asyncio.Queue[Change] = asyncio.Queue()
        self.listeners.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Change]) -> None:
        self.listeners.discard(queue)

    def close_watches(self) -> None:
        for watcher in self.watchers:
            watcher.queue.put_nowait(None)
