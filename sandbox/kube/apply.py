"""Server-side apply: merging an applied configuration by field ownership.

A PATCH of type ``application/apply-patch+yaml`` carries the whole configuration
a manager (``fieldManager``) wants. As kube-apiserver's structured-merge-diff
does, the server:

- computes the set of fields the configuration names (``fieldsV1``: ``f:`` for
  a field, ``k:`` for an element of a list keyed by ``x-kubernetes-list-map-keys``,
  ``v:`` for a value of a set, ``.`` for the element itself);
- refuses with 409 (``FieldManagerConflict``, one cause per field) a value that
  differs from one another manager applied, unless ``force=true``, which moves
  the field to the applier;
- removes the fields the manager applied last time and no longer names, unless
  another manager also owns them;
- merges the configuration into the object: maps field by field, keyed lists
  element by element, sets as a union, atomic lists and scalars replaced;
- records the manager's fields in ``metadata.managedFields`` (operation Apply).

An update (a create, PUT or non-apply patch) that names a ``fieldManager``
records the fields it set or changed under that manager (operation Update), as
the real server does, so an apply that changes them is a conflict with the
updater. A write with no ``fieldManager`` records nothing, where the real server
names a manager after the client's user agent. The applied configuration is
not defaulted before its keys are compared, so a keyed list element is matched
on the keys the configuration gives.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from . import schemas
from .schemas import Schema
from .store import Obj, now_iso

Path = tuple[str, ...]
# Identity and server-set fields: nobody owns them.
_UNOWNED_TOP = {"apiVersion", "kind", "status"}
_UNOWNED_META = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
}


class Conflicts(Exception):
    """Fields another manager owns with a different value: ``conflicts`` are
    (manager, field path) pairs."""

    def __init__(self, conflicts: list[tuple[str, str]], api_version: str) -> None:
        self.conflicts = conflicts
        self.api_version = api_version
        many = "conflict" if len(conflicts) == 1 else "conflicts"
        lines = "\n".join(f'- conflict with "{m}" using {api_version}: {f}' for m, f in conflicts)
        super().__init__(f"Apply failed with {len(conflicts)} {many}:\n{lines}")


def _list_type(schema: Schema | None) -> str:
    return (schema or {}).get("x-kubernetes-list-type", "atomic")


def _item_key(item: Any, keys: list[str]) -> str:
    present = {k: item[k] for k in keys if isinstance(item, dict) and k in item}
    return "k:" + json.dumps(present, separators=(",", ":"), sort_keys=True)


def _matches(item: Any, key: str) -> bool:
    wanted = json.loads(key[2:])
    return isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items())


def field_set(obj: Obj, schema: Schema) -> set[Path]:
    """The fields an applied configuration names."""
    out: set[Path] = set()
    for key, value in obj.items():
        if key in _UNOWNED_TOP:
            continue
        if key == "metadata" and isinstance(value, dict):
            for mkey, mvalue in value.items():
                if mkey not in _UNOWNED_META:
                    sub = schemas.field(schemas.field(schema, "metadata") or {}, mkey)
                    _fields(mvalue, sub, ("f:metadata", f"f:{mkey}"), out)
            continue
        _fields(value, schemas.field(schema, key), (f"f:{key}",), out)
    return out


def _fields(value: Any, schema: Schema | None, path: Path, out: set[Path]) -> None:
    resolved = schemas.resolve(schema)
    props = resolved.get("properties")
    values = resolved.get("additionalProperties")
    if isinstance(value, dict) and (props is not None or isinstance(values, dict)):
        if not value:
            out.add(path)
        for key, sub in value.items():
            _fields(sub, props.get(key) if props is not None else values, (*path, f"f:{key}"), out)
    elif isinstance(value, list) and _list_type(schema) == "map":
        keys = (schema or {}).get("x-kubernetes-list-map-keys", [])
        for item in value:
            at = (*path, _item_key(item, keys))
            out.add((*at, "."))
            if isinstance(item, dict):
                for key, sub in item.items():
                    _fields(sub, schemas.field(schemas.items(schema), key), (*at, f"f:{key}"), out)
    elif isinstance(value, list) and _list_type(schema) == "set":
        out.update((*path, "v:" + json.dumps(v, separators=(",", ":"))) for v in value)
    else:
        out.add(path)


def encode(paths: Iterable[Path]) -> dict[str, Any]:
    """A field set as ``fieldsV1``."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(part, {})
    return tree


def decode(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for part, sub in tree.items():
        path = (*prefix, part)
        if part == "." or not sub:
            out.add(path)
        else:
            out |= decode(sub, path)
    return out


def _value(obj: Any, path: Path) -> tuple[bool, Any]:
    """Whether ``path`` is set in ``obj``, and its value."""
    node = obj
    for part in path:
        if part == ".":
            return True, node
        if part.startswith("f:") and isinstance(node, dict) and part[2:] in node:
            node = node[part[2:]]
        elif part.startswith("k:") and isinstance(node, list):
            found = [i for i in node if _matches(i, part)]
            if not found:
                return False, None
            node = found[0]
        elif part.startswith("v:") and isinstance(node, list):
            return json.loads(part[2:]) in node, json.loads(part[2:])
        else:
            return False, None
    return True, node


def _remove(obj: Any, path: Path) -> None:
    *parents, last = path[:-1] if path[-1] == "." else path
    found, node = _value(obj, tuple(parents))
    if not found:
        return
    if path[-1] == "." or last.startswith(("k:", "v:")):
        if isinstance(node, list):
            if last.startswith("k:"):
                node[:] = [i for i in node if not _matches(i, last)]
            else:
                node[:] = [i for i in node if i != json.loads(last[2:])]
    elif isinstance(node, dict):
        node.pop(last[2:], None)


def merge(current: Any, applied: Any, schema: Schema | None) -> Any:
    """``applied`` merged into ``current`` (copies) by the schema's list types."""
    resolved = schemas.resolve(schema)
    props = resolved.get("properties")
    values = resolved.get("additionalProperties")
    if isinstance(applied, dict) and (props is not None or isinstance(values, dict)):
        out = dict(current) if isinstance(current, dict) else {}
        for key, value in applied.items():
            sub = props.get(key) if props is not None else values
            out[key] = merge(out.get(key), value, sub)
        return out
    if isinstance(applied, list) and isinstance(current, list):
        kind = _list_type(schema)
        if kind == "map":
            keys = (schema or {}).get("x-kubernetes-list-map-keys", [])
            out_list = copy.deepcopy(current)
            for item in applied:
                key = _item_key(item, keys)
                at = next((i for i, old in enumerate(out_list) if _matches(old, key)), None)
                element = schemas.items(schema)
                if at is None:
                    out_list.append(merge(None, item, element))
                else:
                    out_list[at] = merge(out_list[at], item, element)
            return out_list
        if kind == "set":
            return copy.deepcopy(current) + [v for v in applied if v not in current]
    return copy.deepcopy(applied)


Owner = tuple[str, str]  # (manager, operation)


def owners(meta: dict[str, Any]) -> dict[Owner, set[Path]]:
    """The fields each manager owns, by (manager, operation: Apply or Update)."""
    return {
        (entry["manager"], entry.get("operation", "Update")): decode(entry.get("fieldsV1") or {})
        for entry in meta.get("managedFields") or []
    }


def _write_entries(
    obj: Obj, before: list[dict[str, Any]], owned: dict[Owner, set[Path]], api_version: str
) -> None:
    """``owned`` as ``obj``'s managedFields: an entry whose fields did not change keeps its
    time, a changed one is stamped now, an empty one goes; new entries come last."""
    entries = []
    for entry in before:
        key = (entry["manager"], entry.get("operation", "Update"))
        paths = owned.pop(key, set())
        if paths:
            same = decode(entry.get("fieldsV1") or {}) == paths
            entries.append(entry if same else _entry(key, paths, api_version))
    entries += [_entry(key, paths, api_version) for key, paths in owned.items() if paths]
    obj["metadata"]["managedFields"] = entries


def record_update(
    old: Obj | None, new: Obj, schema: Schema, *, manager: str, api_version: str
) -> None:
    """Ownership after an update (a create, PUT or non-apply patch) by ``manager``, in
    ``new``'s managedFields: the fields it set or changed become its (an Update entry) and
    leave their other owners; fields the object no longer has leave every owner."""
    after = field_set(new, schema)
    before = field_set(old, schema) if old is not None else set()
    changed = {p for p in after - before}
    changed |= {p for p in after & before if p[-1] != "." and _value(old, p) != _value(new, p)}
    owned = owners(new["metadata"])
    for key in owned:
        owned[key] &= after
        if key != (manager, "Update"):
            owned[key] -= changed
    owned.setdefault((manager, "Update"), set()).update(changed)
    _write_entries(new, list(new["metadata"].get("managedFields") or []), owned, api_version)


def _field_name(path: Path) -> str:
    return ("." + ".".join(p[2:] if p.startswith("f:") else f"[{p[2:]}]" for p in path)).replace(
        ".[", "["
    )


def apply(
    current: Obj | None,
    applied: Obj,
    schema: Schema,
    *,
    manager: str,
    api_version: str,
    force: bool,
) -> Obj:
    """The object after ``manager`` applies ``applied`` to ``current`` (None: a create)."""
    applied = {k: v for k, v in applied.items() if k != "status"}
    wanted = field_set(applied, schema)
    base = copy.deepcopy(current) if current is not None else {"metadata": {}}
    before = list(base["metadata"].get("managedFields") or [])
    owned = owners(base["metadata"])
    previous = owned.pop((manager, "Apply"), set())
    conflicts = []
    for path in sorted(wanted):
        holders = [k for k, paths in owned.items() if path in paths and path[-1] != "."]
        if not holders or _value(base, path) == _value(applied, path):
            continue
        if force:
            for key in holders:
                owned[key].discard(path)
        else:
            conflicts += [(m, _field_name(path)) for m, _ in holders]
    if conflicts:
        raise Conflicts(conflicts, api_version)
    others = set().union(*owned.values()) if owned else set()
    # Whole elements first: a field removed from an element first could unmatch its key.
    for path in sorted(previous - wanted, key=lambda p: (p[-1] != ".", -len(p), p)):
        shared = any(p[: len(path) - (path[-1] == ".")] == path[: len(path) - (path[-1] == ".")]
                     for p in others)  # fmt: skip
        if not shared:
            _remove(base, path)
    result: Obj = merge(base, applied, schema)
    owned[(manager, "Apply")] = wanted
    _write_entries(result, before, owned, api_version)
    return result


def _entry(owner: Owner, paths: set[Path], api_version: str) -> dict[str, Any]:
    return {
        "manager": owner[0],
        "operation": owner[1],
        "apiVersion": api_version,
        "time": now_iso(),
        "fieldsType": "FieldsV1",
        "fieldsV1": encode(paths),
    }
