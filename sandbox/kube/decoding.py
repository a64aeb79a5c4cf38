"""What the API server's decoder does to a request body before any verb sees it.

A body is decoded into the kind's type: a value of the wrong JSON type is a 400
whatever the request asks; a body of another kind than the URL names is a 400;
``null`` is read as Go reads it (a null list element or map value is the zero
value of its type, a null field is unset); fields the type does not have are
dropped, and ``fieldValidation`` says what is said about them (``Strict``: a 400
naming each; ``Warn``, the default: a ``Warning`` header each; ``Ignore``:
nothing). The kinds' fields come from :mod:`.schemas`.
"""

from __future__ import annotations

from . import schemas
from .errors import bad_request
from .store import Obj, Resource

FIELD_VALIDATION = ("Ignore", "Warn", "Strict")


def field_validation(values: list[str]) -> str:
    """A write's ``fieldValidation`` (Warn, the server's default, when not given)."""
    if not values:
        return "Warn"
    if values[-1] not in FIELD_VALIDATION:
        raise bad_request(
            f'fieldValidation must be one of "Ignore", "Warn" or "Strict", not "{values[-1]}"'
        )
    return values[-1]


def schema_of(resource: Resource) -> schemas.Schema:
    return schemas.of(resource.group, "v1", resource.kind)


def check_fields(resource: Resource, obj: Obj, validation: str, warnings: list[str] | None) -> None:
    """Decode ``obj`` as the server's decoder does: a value of the wrong JSON type is a 400;
    fields the schema does not know are dropped, refused with 400 under ``Strict``, each
    named in ``warnings`` under ``Warn``."""
    if not isinstance(obj, dict):
        return
    if (kind := obj.get("kind")) not in (None, resource.kind) or obj.get("apiVersion") not in (
        None,
        resource.api_version,
    ):
        raise bad_request(
            f"the object provided is unrecognized (must be of type {resource.kind}): "
            f"{obj.get('apiVersion')}, Kind={kind}"
        )
    schema = schema_of(resource)
    if (wrong := schemas.type_error(obj, schema, owner=resource.kind)) is not None:
        raise bad_request(
            f'{resource.kind} in version "v1" cannot be handled as a {resource.kind}: {wrong}'
        )
    schemas.zero_nulls(obj, schema)
    found = schemas.unknown_fields(obj, schema, prune=True)
    if not found:
        return
    named = [f'unknown field "{f}"' for f in found]
    if validation == "Strict":
        raise bad_request(
            f'{resource.kind} in version "v1" cannot be handled as a {resource.kind}: '
            f"strict decoding error: {', '.join(named)}"
        )
    if validation == "Warn" and warnings is not None:
        warnings.extend(named)
