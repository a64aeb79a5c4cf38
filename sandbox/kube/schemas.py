"""The served kinds' schemas: which fields exist, and how a strategic merge patch merges them.

A real API server knows its types from Go structs; the emulator reads the same
facts from the Kubernetes OpenAPI definitions that ``kubernetes-validate``
bundles (generated from kube-apiserver's own OpenAPI document, one set per
release), for the release :data:`.discovery.VERSION` names. From them come:

- unknown fields (:func:`unknown_fields`), which the server drops, warns about or
  refuses according to the request's ``fieldValidation``;
- each field's patch strategy and merge key (``x-kubernetes-patch-strategy``,
  ``x-kubernetes-patch-merge-key``), which :mod:`.patch` follows;
- the component schemas of the OpenAPI v3 documents (:mod:`.openapi`).

Free-form fields (``RawExtension``, a schema with no ``properties``) are taken
as they come, as the real server does.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from .discovery import VERSION

Schema = dict[str, Any]
_REF_PREFIXES = ("#/$defs/", "/api/_definitions.json#/$defs/")


@functools.cache
def definitions() -> dict[str, Schema]:
    """Every definition of the emulated release, by its OpenAPI name
    (``io.k8s.api.apps.v1.Deployment``)."""
    release = f"v{VERSION['major']}.{VERSION['minor']}.0-local-strict"
    bundled = resources.files("kubernetes_validate") / "kubernetes-json-schema" / release
    defs: dict[str, Schema] = json.loads((bundled / "_definitions.json").read_text())["$defs"]
    return defs


@functools.cache
def _by_kind() -> dict[tuple[str, str, str], str]:
    found: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            found.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return found


def definition_name(group: str, version: str, kind: str) -> str:
    """The definition of a served kind; a kind with none is a bug in the emulator's tables."""
    return _by_kind()[(group, version, kind)]


def ref_name(ref: str) -> str:
    for prefix in _REF_PREFIXES:
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    raise KeyError(ref)


def resolve(schema: Schema | None) -> Schema:
    """``schema`` with its ``$ref`` followed (an empty schema, free-form, for None)."""
    if not schema:
        return {}
    if "$ref" in schema:
        return definitions()[ref_name(schema["$ref"])]
    return schema


def of(group: str, version: str, kind: str) -> Schema:
    return definitions()[definition_name(group, version, kind)]


def field(schema: Schema, key: str) -> Schema | None:
    """The property ``key`` of an object schema (None when the object has no such field)."""
    props = resolve(schema).get("properties")
    return None if props is None else props.get(key)


def has_field(schema: Schema, key: str) -> bool:
    return key in (resolve(schema).get("properties") or {})


def items(schema: Schema | None) -> Schema:
    """The element schema of a list field."""
    return resolve(resolve(schema).get("items") if schema else None)


def unknown_fields(obj: Any, schema: Schema, *, prune: bool, path: str = "") -> list[str]:
    """Paths of the fields ``obj`` has and ``schema`` does not know, as the API server's strict
    decoder names them (``spec.template.spec.containers[0].colour``); with ``prune`` they
    are removed from ``obj``."""
    found: list[str] = []
    schema = resolve(schema)
    if isinstance(obj, dict):
        props = schema.get("properties")
        values = schema.get("additionalProperties")
        for key in list(obj):
            where = f"{path}.{key}" if path else key
            if props is not None:
                if key not in props:
                    found.append(where)
                    if prune:
                        del obj[key]
                    continue
                found += unknown_fields(obj[key], props[key], prune=prune, path=where)
            elif isinstance(values, dict):
                found += unknown_fields(obj[key], values, prune=prune, path=where)
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            found += unknown_fields(item, schema["items"], prune=prune, path=f"{path}[{i}]")
    return found


def zero_nulls(obj: Any, schema: Schema) -> None:
    """Decode ``null`` as Go's decoder does, so that validation sees what it sees on a real
    server: a list element or map value becomes the zero value of its type (an empty struct,
    ``""``, ``0``, ``false``: a null container is one without a name) and a struct field is
    left unset."""
    schema = resolve(schema)
    if isinstance(obj, dict):
        props, values = schema.get("properties"), schema.get("additionalProperties")
        for key, value in list(obj.items()):
            sub = props.get(key) if props is not None else values
            if not isinstance(sub, dict):
                continue
            if value is None and props is not None:
                del obj[key]
            elif value is None:
                obj[key] = _zero(sub)
            else:
                zero_nulls(value, sub)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            if item is None:
                obj[i] = _zero(schema["items"])
            else:
                zero_nulls(item, schema["items"])


def _zero(schema: Schema) -> Any:
    kinds = _kinds(resolve(schema))
    zeros = {"object": dict, "string": str, "integer": int, "number": int, "boolean": bool}
    if len(kinds) != 1 or kinds[0] not in zeros:
        return None  # an int-or-string or a list: Go keeps a nil
    return zeros[kinds[0]]()


_JSON_KINDS = {bool: "bool", int: "number", float: "number", str: "string", dict: "object",
               list: "array"}  # fmt: skip
_GO_TYPES = {"string": "string", "boolean": "bool", "number": "float64", "object": "object",
             "array": "array"}  # fmt: skip


def _fits(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    wanted = {"string": str, "boolean": bool, "object": dict, "array": list}.get(kind)
    return wanted is None or isinstance(value, wanted)


def type_error(obj: Any, schema: Schema, *, path: str = "", owner: str = "") -> str | None:
    """The first value of the wrong JSON type in ``obj``, worded as the server's JSON decoder
    words it (``json: cannot unmarshal number into Go struct field EnvVar.spec.template.spec.
    containers.env.value of type string``); such a value is refused whatever the request's
    fieldValidation. ``null`` fits everything, as it does for Go's decoder."""
    if obj is None:
        return None
    if "$ref" in schema:
        owner = ref_name(schema["$ref"]).rsplit(".", 1)[-1]
        schema = resolve(schema)
    if "oneOf" in schema:
        kinds = [k for option in schema["oneOf"] for k in _kinds(option)]
    else:
        kinds = _kinds(schema)
    if kinds and not any(_fits(obj, k) for k in kinds):
        fmt = schema.get("format", "")
        go = fmt if kinds == ["integer"] and fmt else _GO_TYPES.get(kinds[0], kinds[0])
        return (f"json: cannot unmarshal {_JSON_KINDS.get(type(obj), 'value')} into Go struct "
                f"field {owner}.{path} of type {go}")  # fmt: skip
    props = schema.get("properties")
    values = schema.get("additionalProperties")
    if isinstance(obj, dict):
        for key, value in obj.items():
            sub = props.get(key) if props is not None else values
            if isinstance(sub, dict):
                # Go names a map's values by the map's field, without the key.
                where = path if props is None else f"{path}.{key}" if path else key
                if found := type_error(value, sub, path=where, owner=owner):
                    return found
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            if found := type_error(item, schema["items"], path=path, owner=owner):
                return found
    return None


def _kinds(schema: Schema) -> list[str]:
    kinds = schema.get("type")
    if isinstance(kinds, str):
        return [kinds]
    return [k for k in kinds or [] if k != "null"]
