"""The three patch formats the API server accepts.

JSON Patch uses the ``jsonpatch`` library (RFC 6902). Merge patch is RFC 7386.
Strategic merge patch follows apimachinery's ``strategicpatch`` with each field's
patch strategy and merge key read from the kind's schema (:mod:`.schemas`), as
the real server reads them from its Go types:

- a list with strategy ``merge`` is merged by its merge key (containers and env
  by ``name``, ports by ``containerPort``, volumes by ``name``); a list of
  scalars with that strategy (``finalizers``) is a union; every other list is
  replaced;
- ``$patch: replace`` replaces a map or a list, ``$patch: delete`` empties a map
  or (in a merged list) deletes the element with that key; any other value is
  refused;
- ``$retainKeys`` (fields with the ``retainKeys`` strategy, such as a volume's
  source or a Deployment's strategy) clears the keys it does not list;
- ``$deleteFromPrimitiveList/<field>`` removes values from a scalar list;
- ``$setElementOrder/<field>`` orders a merged list: the listed elements in the
  given order, then those the patch did not mention, in their old order (the
  real server interleaves these; where they go among the listed ones is the one
  approximation);
- ``null`` deletes a field.

A field the schema does not know is merged as a map or replaced as a list; the
server's field validation then drops or refuses it.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from . import schemas
from .schemas import Schema

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM = "$deleteFromPrimitiveList/"
_ORDER = "$setElementOrder/"


class PatchError(ValueError):
    """A patch that cannot be applied; ``code`` is the HTTP status the server answers."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _strategy(schema: Schema | None) -> tuple[set[str], str]:
    """A field's patch strategies and merge key, from its schema."""
    if not schema:
        return set(), ""
    strategies = set(filter(None, schema.get("x-kubernetes-patch-strategy", "").split(",")))
    return strategies, schema.get("x-kubernetes-patch-merge-key", "")


def _without_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_directives(v)
            for k, v in value.items()
            if not k.startswith("$") and v is not None
        }
    if isinstance(value, list):
        return [_without_directives(v) for v in value]
    return value


def merge_map(original: dict[str, Any], patch: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """``patch`` applied to a map ``original`` of type ``schema`` (both are left unchanged)."""
    if _DIRECTIVE in patch:
        # As apimachinery's handleDirectiveInMergeMap: a map knows only these two.
        directive = patch[_DIRECTIVE]
        if directive == "replace":
            return _without_directives(patch)  # type: ignore[no-any-return]
        if directive == "delete":
            return {}
        raise PatchError(f"unknown patch type: {directive} in map: {patch}", 400)
    result = copy.deepcopy(original)
    if _RETAIN_KEYS in patch:
        retained = patch[_RETAIN_KEYS]
        if not isinstance(retained, list):
            raise PatchError(f"invalid patch: $retainKeys must be a list: {retained}", 400)
        missing = [k for k in patch if not k.startswith("$") and k not in retained]
        if missing:
            raise PatchError(
                f"The patch does not match retainKeys: {missing} are not in {retained}", 422
            )
        result = {k: v for k, v in result.items() if k in retained}
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM):
            name = key[len(_DELETE_FROM) :]
            if not isinstance(value, list):
                raise PatchError(f"invalid patch: {key} must be a list", 400)
            if isinstance(result.get(name), list):
                result[name] = [v for v in result[name] if v not in value]
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        sub = schemas.field(schema, key)
        if value is None:
            result.pop(key, None)
            continue
        old = result.get(key)
        if isinstance(value, dict):
            strategies, _ = _strategy(sub)
            if "replace" in strategies:
                result[key] = _without_directives(value)
            else:
                base = old if isinstance(old, dict) else {}
                result[key] = merge_map(base, value, sub or {})
        elif isinstance(value, list):
            result[key] = _merge_list(
                old if isinstance(old, list) else [], value, sub, patch.get(_ORDER + key)
            )
        else:
            result[key] = copy.deepcopy(value)
    for key, order in patch.items():
        # An order for a list the patch does not otherwise touch still orders it.
        if key.startswith(_ORDER) and key[len(_ORDER) :] not in patch:
            name = key[len(_ORDER) :]
            if isinstance(result.get(name), list):
                _, merge_key = _strategy(schemas.field(schema, name))
                result[name] = _ordered(result[name], order, merge_key)
    return result


def _key_of(item: Any, merge_key: str) -> Any:
    if not isinstance(item, dict):
        return item
    if merge_key not in item:
        raise PatchError(f"map: {item} does not contain declared merge key: {merge_key}", 400)
    return item[merge_key]


def _key_or_none(item: Any, merge_key: str) -> Any:
    return item.get(merge_key) if isinstance(item, dict) else None


def _merge_list(original: list[Any], patch: list[Any], schema: Schema | None, order: Any) -> Any:
    strategies, merge_key = _strategy(schema)
    if "merge" not in strategies:
        return [_without_directives(v) for v in patch if v is not None]
    if not merge_key:
        # A list of scalars with the merge strategy: a union, old values first.
        merged = list(original) + [v for v in patch if v not in original]
        return _ordered(merged, order, "")
    element = schemas.items(schema)
    # As apimachinery's sliceElementType: a list merged by key holds only maps, checked
    # before any directive is read (a scalar beside "$patch: replace" too).
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"invalid patch: {item!r} in a list merged by {merge_key}", 400)
    if any(item.get(_DIRECTIVE) == "replace" for item in patch):
        return [_without_directives(v) for v in patch if v.get(_DIRECTIVE) != "replace"]
    result = copy.deepcopy(original)
    for item in patch:
        key = _key_of(item, merge_key)
        at = next((i for i, old in enumerate(result) if _key_or_none(old, merge_key) == key), None)
        if item.get(_DIRECTIVE) == "delete":
            result = [old for old in result if _key_or_none(old, merge_key) != key]
        elif at is None:
            result.append(merge_map({}, item, element))
        else:
            result[at] = merge_map(result[at], item, element)
    return _ordered(result, order, merge_key)


def _ordered(items: list[Any], order: Any, merge_key: str) -> list[Any]:
    if not isinstance(order, list):
        return items
    wanted = [_key_of(o, merge_key) if merge_key else o for o in order]
    keys = [_key_of(i, merge_key) if merge_key else i for i in items]
    listed = sorted(
        (i for i, k in zip(items, keys, strict=True) if k in wanted),
        key=lambda i: wanted.index(_key_of(i, merge_key) if merge_key else i),
    )
    return listed + [i for i, k in zip(items, keys, strict=True) if k not in wanted]


def apply_patch(
    content_type: str, target: dict[str, Any], patch: Any, schema: Schema
) -> dict[str, Any]:
    """``patch`` of ``content_type`` applied to ``target``, an object of type ``schema``."""
    kind = content_type.split(";")[0].strip()
    if kind == JSON_PATCH:
        if not isinstance(patch, list):
            raise PatchError("a JSON patch is a list of operations", 400)
        try:
            return jsonpatch.apply_patch(target, patch)  # type: ignore[no-any-return]
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise PatchError(f"the JSON patch cannot be applied: {exc}") from None
    if kind not in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        raise PatchError(f"unsupported patch type {kind!r}", 415)
    if not isinstance(patch, dict):
        raise PatchError("a merge patch is a JSON object", 400)
    if kind == MERGE_PATCH:
        return merge_patch(target, patch)  # type: ignore[no-any-return]
    return merge_map(target, patch, schema)
