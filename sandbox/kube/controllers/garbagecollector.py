"""The garbage collector: dependents follow their owners, by ``ownerReferences``.

As kube-controller-manager's garbage collector does:

- **Background** (the default): once every owner a dependent names is gone
  (no object of that kind and name with that uid), the dependent is deleted;
  a dependent that still has a live owner loses only the dangling reference.
- **Foreground**: an owner deleted with ``propagationPolicy: Foreground``
  carries the ``foregroundDeletion`` finalizer; its dependents are deleted,
  and the finalizer is removed (completing the owner's deletion) only when
  no dependent with ``blockOwnerDeletion: true`` is left.
- **Orphan**: an owner carrying the ``orphan`` finalizer has its references
  removed from every dependent, then the finalizer.

An owner reference is looked up in the dependent's namespace, or among
cluster-scoped objects; a namespaced owner never owns a cluster-scoped
dependent.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

from ..store import RESOURCES, Change, Obj, Resource, Store
from ..verbs import FOREGROUND_FINALIZER, ORPHAN_FINALIZER, delete, delete_pod, store_update

_BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES.values()}


def _all_objects(store: Store) -> Iterator[tuple[Resource, Obj]]:
    for resource in RESOURCES.values():
        for obj in list(store.list(resource.plural, None)):
            yield resource, obj


def _owner(store: Store, dependent: Resource, ns: str, ref: Obj) -> Obj | None:
    """The live owner a reference names, or None when it is gone (or never was)."""
    owner = _BY_KIND.get((ref.get("apiVersion"), ref.get("kind")))
    if owner is None or (owner.namespaced and not dependent.namespaced):
        return None
    obj = store.get(owner.plural, ns if owner.namespaced else "", ref.get("name", ""))
    if obj is None or obj["metadata"]["uid"] != ref.get("uid"):
        return None
    return obj


def _delete_dependent(store: Store, resource: Resource, obj: Obj) -> None:
    meta = obj["metadata"]
    if resource.plural == "pods":
        delete_pod(store, obj, None)
    elif not meta.get("deletionTimestamp"):
        delete(store, resource, meta.get("namespace", ""), meta["name"], {})


def _drop_finalizer(store: Store, resource: Resource, obj: Obj, finalizer: str) -> None:
    new = copy.deepcopy(obj)
    new["metadata"]["finalizers"] = [
        f for f in obj["metadata"].get("finalizers") or [] if f != finalizer
    ]
    if not new["metadata"]["finalizers"]:
        del new["metadata"]["finalizers"]
    store_update(store, resource, obj, new)


class GarbageCollector:
    """The collector, with the owners it has seen named: a change concerns it only when it
    touches an owner or a dependent. A load test deletes a thousand pods nobody owns;
    each delete used to cost a pass over every object of the cluster."""

    def __init__(self) -> None:
        self.owners: set[str] | None = None
        """Uids that some object's ``ownerReferences`` named at the last pass (None: not
        known, as before the first pass or after a failed one: every change concerns it)."""

    def __call__(self, store: Store, changes: list[Change]) -> bool:
        if changes and not any(self._concerns(c) for c in changes):
            return False
        self.owners = None
        waiting, self.owners = collect_garbage(store)
        return waiting

    def _concerns(self, change: Change) -> bool:
        if self.owners is None:
            return True
        meta = change.obj["metadata"]
        refs = meta.get("ownerReferences")
        if refs and (
            change.type != "MODIFIED"
            or change.previous is None
            or (change.previous.get("metadata") or {}).get("ownerReferences") != refs
        ):
            # A new dependent, perhaps of an owner already gone. A dependent modified with
            # the same references (a node's Lease renewed every 10 s) changes nothing here.
            return True
        if change.type == "DELETED" or meta.get("deletionTimestamp"):
            finalizers = meta.get("finalizers") or []
            return (
                meta.get("uid") in self.owners
                or ORPHAN_FINALIZER in finalizers
                or FOREGROUND_FINALIZER in finalizers
            )
        return False


def collect_garbage(store: Store) -> tuple[bool, set[str]]:
    """One pass of the garbage collector: True while an owner waits on its dependents, and
    the uids the dependents' references name."""
    waiting = False
    objects = list(_all_objects(store))
    dependents: dict[str, list[tuple[Resource, Obj]]] = {}
    for resource, obj in objects:
        for ref in obj["metadata"].get("ownerReferences") or []:
            dependents.setdefault(ref.get("uid", ""), []).append((resource, obj))
    # Owners being deleted in the foreground or with orphaning.
    for resource, owner in objects:
        meta = owner["metadata"]
        finalizers = meta.get("finalizers") or []
        if not meta.get("deletionTimestamp"):
            continue
        mine = dependents.get(meta["uid"], [])
        if ORPHAN_FINALIZER in finalizers:
            for dep_resource, dep in mine:
                current = store.get(
                    dep_resource.plural,
                    dep["metadata"].get("namespace", ""),
                    dep["metadata"]["name"],
                )
                if current is None:
                    continue
                new = copy.deepcopy(current)
                new["metadata"]["ownerReferences"] = [
                    r
                    for r in current["metadata"].get("ownerReferences") or []
                    if r.get("uid") != meta["uid"]
                ]
                if not new["metadata"]["ownerReferences"]:
                    del new["metadata"]["ownerReferences"]
                store.update(dep_resource.plural, new, current)
            _drop_finalizer(store, resource, owner, ORPHAN_FINALIZER)
        elif FOREGROUND_FINALIZER in finalizers:
            blocking = False
            for dep_resource, dep in mine:
                _delete_dependent(store, dep_resource, dep)
                ref = next(
                    r for r in dep["metadata"]["ownerReferences"] if r.get("uid") == meta["uid"]
                )
                dep_meta = dep["metadata"]
                if ref.get("blockOwnerDeletion") and store.get(
                    dep_resource.plural, dep_meta.get("namespace", ""), dep_meta["name"]
                ):
                    blocking = True
            if blocking:
                waiting = True
            else:
                current = store.get(resource.plural, meta.get("namespace", ""), meta["name"])
                if current is not None:
                    _drop_finalizer(store, resource, current, FOREGROUND_FINALIZER)
    # Dependents whose owners are gone (Background).
    for resource, obj in objects:
        meta = obj["metadata"]
        refs = meta.get("ownerReferences") or []
        if not refs:
            continue
        current = store.get(resource.plural, meta.get("namespace", ""), meta["name"])
        if current is None or current["metadata"].get("uid") != meta["uid"]:
            continue
        refs = current["metadata"].get("ownerReferences") or []
        live = [r for r in refs if _owner(store, resource, meta.get("namespace", ""), r)]
        if not live and refs:
            _delete_dependent(store, resource, current)
        elif len(live) < len(refs):
            new = copy.deepcopy(current)
            new["metadata"]["ownerReferences"] = live
            store.update(resource.plural, new, current)
    return waiting, set(dependents)
