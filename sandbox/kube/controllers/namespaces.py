"""The namespace controller: a Terminating namespace is emptied, then removed.

As on a real cluster, removal is never immediate: the controller deletes the
content, and only a later pass that finds the namespace empty removes it, so
for a moment after the ``DELETE`` a client sees the namespace Terminating
(and creating in it is refused).
"""

from __future__ import annotations

import time

from ..store import RESOURCES, Change, Store
from ..verbs import delete

SETTLE_SECONDS = 0.2


class NamespaceController:
    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        """When each Terminating namespace was first seen."""

    def __call__(self, store: Store, changes: list[Change]) -> bool:
        pending = False
        now = time.monotonic()
        for ns_obj in list(store.list("namespaces", None)):
            if ns_obj["status"].get("phase") != "Terminating":
                continue
            ns = ns_obj["metadata"]["name"]
            first = self._seen.setdefault(ns, now)
            remaining = 0
            for plural, resource in RESOURCES.items():
                if not resource.namespaced:
                    continue
                for obj in list(store.list(plural, ns)):
                    remaining += 1
                    if plural == "pods" or not obj["metadata"].get("deletionTimestamp"):
                        delete(store, resource, ns, obj["metadata"]["name"], {})
            if remaining == 0 and now - first >= SETTLE_SECONDS:
                store.delete("namespaces", ns_obj)
                del self._seen[ns]
            else:
                pending = True
        return pending
