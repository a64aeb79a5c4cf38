"""OpenAPI v3 documents of the served group versions (``/openapi/v3``).

Clients read these to learn what the server checks: kubectl and Helm ask, per
kind, whether the kind's PATCH operation takes the ``fieldValidation`` query
parameter, and if it does they leave unknown-field checks to the server
(client-go's ``QueryParamVerifierV3``); ``kubectl explain`` reads the schemas.
Each group version's document lists the paths of its resources with
``x-kubernetes-group-version-kind`` on every operation, and under
``components.schemas`` the definitions those kinds reach, converted from the
JSON Schema :mod:`.schemas` reads to OpenAPI 3.0 (one ``type``, integer-or-string
fields marked ``x-kubernetes-int-or-string`` as kube-apiserver marks them).

OpenAPI v2 (``/openapi/v2``) is not served: client-go asks for it in protobuf,
which the emulator does not write, and only falls back to it when v3 is missing.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from aiohttp import web

from . import schemas
from .discovery import VERSION
from .errors import NO_SUCH_RESOURCE, ApiError
from .store import RESOURCES, Resource

Doc = dict[str, Any]
_QUERY = {"dryRun", "fieldManager", "fieldValidation", "pretty"}


def _convert(node: Any) -> Any:
    """A JSON Schema node of the bundled definitions as an OpenAPI 3.0 schema node."""
    if isinstance(node, list):
        return [_convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    if node.get("oneOf") == [{"type": ["string", "null"]}, {"type": ["integer", "null"]}]:
        return {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"},
                {"type": "string"}]}  # fmt: skip
    out: Doc = {}
    for key, value in node.items():
        if key == "$ref":
            out["$ref"] = "#/components/schemas/" + schemas.ref_name(value)
        elif key == "type" and isinstance(value, list):
            kinds = [v for v in value if v != "null"]
            if len(kinds) == 1:
                out["type"] = kinds[0]
        elif key == "additionalProperties" and value is False:
            continue  # kube-apiserver's documents leave closed objects implicit
        elif key in ("properties",):
            out[key] = {k: _convert(v) for k, v in value.items()}
        else:
            out[key] = _convert(value)
    return out


def _reached(names: list[str]) -> list[str]:
    """``names`` and every definition they reference, transitively."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        text = json.dumps(schemas.definitions()[name])
        for part in text.split('"$ref": "')[1:]:
            todo.append(schemas.ref_name(part.split('"', 1)[0]))
    return sorted(seen)


def _param(name: str, where: str = "query") -> Doc:
    return {"name": name, "in": where, "schema": {"type": "string", "uniqueItems": True},
            **({"required": True} if where == "path" else {})}  # fmt: skip


def _body(ref: str) -> Doc:
    return {"content": {"application/json": {"schema": {"$ref": ref}}}, "required": True}


def _ok(ref: str, code: str = "200") -> Doc:
    return {code: {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}}


def _paths(resource: Resource) -> Doc:
    prefix = f"/apis/{resource.group}/v1" if resource.group else "/api/v1"
    scope = "/namespaces/{namespace}" if resource.namespaced else ""
    gvk = {"group": resource.group, "version": "v1", "kind": resource.kind}
    ref = "#/components/schemas/" + schemas.definition_name(resource.group, "v1", resource.kind)
    list_ref = "#/components/schemas/" + schemas.definition_name(
        resource.group, "v1", resource.list_kind
    )
    path_params = [_param("namespace", "path")] if resource.namespaced else []
    writes = [_param(q) for q in sorted(_QUERY)]

    def op(action: str, verb: str, **more: Any) -> Doc:
        return {"operationId": f"{verb}{resource.kind}", "tags": [resource.group or "core_v1"],
                "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
                **more}  # fmt: skip

    collection = {
        "parameters": path_params,
        "get": op("list", "list", responses=_ok(list_ref),
                  parameters=[_param(q) for q in ("labelSelector", "fieldSelector", "limit",
                                                  "continue", "watch", "resourceVersion")]),
        "post": op("post", "create", requestBody=_body(ref), parameters=writes,
                   responses={**_ok(ref), **_ok(ref, "201")}),
    }  # fmt: skip
    patch_body = {"content": {t: {"schema": {"type": "object"}} for t in (
        "application/json-patch+json", "application/merge-patch+json",
        "application/strategic-merge-patch+json")}, "required": True}  # fmt: skip
    item = {
        "parameters": [_param("name", "path"), *path_params],
        "get": op("get", "read", responses=_ok(ref)),
        "put": op("put", "replace", requestBody=_body(ref), parameters=writes, responses=_ok(ref)),
        "patch": op("patch", "patch", requestBody=patch_body,
                    parameters=[*writes, _param("force")], responses=_ok(ref)),
        "delete": op("delete", "delete", parameters=[_param("dryRun"),
                     _param("gracePeriodSeconds"), _param("propagationPolicy")],
                     responses=_ok("#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Status")),
    }  # fmt: skip
    base = f"{prefix}{scope}/{resource.plural}"
    return {base: collection, base + "/{name}": item}


@functools.cache
def document(group: str) -> Doc:
    """The OpenAPI v3 document of ``group``'s v1 (the core group: ``""``)."""
    served = [r for r in RESOURCES.values() if r.group == group]
    if not served:
        raise ApiError(404, "NotFound", NO_SUCH_RESOURCE)
    paths: Doc = {}
    roots = ["io.k8s.apimachinery.pkg.apis.meta.v1.Status"]
    for resource in served:
        paths.update(_paths(resource))
        roots += [schemas.definition_name(group, "v1", k) for k in (resource.kind,
                  resource.list_kind)]  # fmt: skip
    components = {name: _convert(schemas.definitions()[name]) for name in _reached(roots)}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": components},
    }


def _key(group: str) -> str:
    return f"apis/{group}/v1" if group else "api/v1"


@functools.cache
def _hash(group: str) -> str:
    text = json.dumps(document(group), sort_keys=True).encode()
    return hashlib.sha512(text).hexdigest()[:128].upper()


async def index(request: web.Request) -> web.Response:
    groups = sorted({r.group for r in RESOURCES.values()})
    paths = {_key(g): {"serverRelativeURL": f"/openapi/v3/{_key(g)}?hash={_hash(g)}"}
             for g in groups}  # fmt: skip
    return web.json_response({"paths": paths})


async def group_version(request: web.Request) -> web.Response:
    tail = request.match_info["tail"].strip("/")
    if tail == "api/v1":
        group = ""
    elif tail.startswith("apis/") and tail.endswith("/v1") and tail.count("/") == 2:
        group = tail.split("/")[1]
    else:
        raise ApiError(404, "NotFound", NO_SUCH_RESOURCE)
    body = json.dumps(document(group))
    return web.Response(
        text=body, content_type="application/json", headers={"Etag": f'"{_hash(group)}"'}
    )
