"""The three patch formats the API server accepts.

JSON Patch uses the ``jsonpatch`` library (RFC 6902). Merge patch is RFC 7386.
Strategic merge patch is approximated: lists that Kubernetes merges by a key
(containers, env, volumes and ports by ``name``, conditions by ``type``, and so
on) are merged by that key, and every other list is replaced, as the real
server does for lists without a patch strategy. ``$patch`` directives are not
supported and are refused.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# Field name -> merge key, for the lists in the core API with a patch strategy.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "conditions": "type",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "imagePullSecrets": "name",
    "tolerations": "",  # atomic in practice: replaced
}


class PatchError(ValueError):
    """A patch that cannot be applied (answered 422 or 415 by the server)."""


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


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    if isinstance(patch, dict):
        if "$patch" in patch or any(k.startswith("$") for k in patch):
            raise PatchError(
                "strategic merge patch directives ($patch, $setElementOrder…) are not supported"
            )
        result = dict(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(result.get(key), value, key)
        return result
    merge_key = MERGE_KEYS.get(field)
    if isinstance(patch, list) and merge_key and isinstance(target, list):
        result = [copy.deepcopy(item) for item in target]
        for item in patch:
            key = item.get(merge_key) if isinstance(item, dict) else None
            at = next(
                (
                    i
                    for i, old in enumerate(result)
                    if isinstance(old, dict) and old.get(merge_key) == key
                ),
                None,
            )
            if key is None or at is None:
                result.append(copy.deepcopy(item))
            else:
                result[at] = strategic_merge_patch(result[at], item)
        return result
    return copy.deepcopy(patch)


def apply_patch(content_type: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    kind = content_type.split(";")[0].strip()
    if kind == JSON_PATCH:
        if not isinstance(patch, list):
            raise PatchError("a JSON patch is a list of operations")
        try:
            return jsonpatch.apply_patch(target, patch)  # type: ignore[no-any-return]
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise PatchError(f"the JSON patch cannot be applied: {exc}") from None
    if not isinstance(patch, dict):
        raise PatchError("a merge patch is a JSON object")
    if kind == MERGE_PATCH:
        return merge_patch(target, patch)  # type: ignore[no-any-return]
    if kind == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(target, patch)  # type: ignore[no-any-return]
    raise PatchError(f"unsupported patch type {kind!r}")
