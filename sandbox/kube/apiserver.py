"""The Kubernetes REST API (core ``v1``) over HTTP on 127.0.0.1.

What a Kubernetes client sees is what it would see from a real API server, for
the resources in :data:`.store.RESOURCES`: discovery documents; get, list
(label and field selectors, ``limit``/``continue``), watch (resume from a
``resourceVersion``, bookmarks, ``timeoutSeconds``, filtered-watch
semantics, ``410 Expired``), create (with ``generateName``), replace with
optimistic concurrency, the three patch types, the ``status`` and
``binding`` subresources, pod logs, and graceful deletion; errors as
``Status`` objects. Bearer-token authentication guards every request but
``/healthz``-style probes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import secrets
import string
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from . import admission, tables
from .patch import APPLY_PATCH, PatchError, apply_patch
from .selectors import Selector, SelectorError
from .store import RESOURCES, Expired, Obj, Resource, Store, now_iso

VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0+sovereign-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "platform": "linux/amd64",
}
_TRUE = {"true", "1", "True"}
CLUSTER_USER_AGENT = "sovereign-emulated-cluster"
_NAME_CHARS = string.ascii_lowercase + string.digits


class ApiError(Exception):
    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> Obj:
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def not_found(resource: Resource, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{resource.plural} "{name}" not found',
        {"name": name, "kind": resource.plural},
    )


def conflict(resource: Resource, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource.plural} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {"name": name, "kind": resource.plural},
    )


# What a real cluster's system:public-info-viewer role lets anyone read, signed in or not.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/version", "/version/"})


def _route_of(request: web.Request) -> str:
    parts = request.path.strip("/").split("/")
    base = 2 if parts[0] == "api" else 3  # /api/v1/… or /apis/<group>/v1/…
    if len(parts) > base + 1 and parts[base] == "namespaces":
        parts[base + 1] = "{ns}"
    if len(parts) > base + 3:
        parts[base + 3] = "{name}"
    watch = " (watch)" if request.query.get("watch") in _TRUE else ""
    return f"{request.method} /{'/'.join(parts)}{watch}"


def _check_watch_list(match: str | None, bookmarks: bool) -> None:
    """A streaming list (``sendInitialEvents``) asks for its state as apimachinery requires."""
    causes = []
    if match != "NotOlderThan":
        causes.append(
            (
                "resourceVersionMatch",
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to "
                "NotOlderThan",
            )
        )
    if not bookmarks:
        causes.append(
            (
                "allowWatchBookmarks",
                "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
            )
        )
    if causes:
        raise admission.Invalid("ListOptions", "", causes)


def _table_include(request: web.Request) -> str | None:
    """The ``includeObject`` of a request that asks for a Table (kubectl's Accept header), or
    None when the client wants the objects themselves."""
    if not tables.wants_table(request.headers.get("Accept", "")):
        return None
    return request.query.get("includeObject", "Metadata")


def _as_table(resource: Resource, objects: list[Obj], meta: Obj | None, include: str) -> Obj:
    """``objects`` as a Table; ``meta`` is the list's, or None for one object's version."""
    if meta is None:
        meta = {"resourceVersion": objects[0]["metadata"].get("resourceVersion", "")}
    return tables.table(resource.plural, [_out(resource, o) for o in objects], meta, include)


def _watch_encoder(request: web.Request, resource: Resource) -> Callable[[Obj], Obj]:
    """How each watched object is sent: as itself, or as a one-row Table when the client
    asked for tables (`kubectl get -w`). As kube-apiserver does, only the first Table
    carries the column definitions."""
    include = _table_include(request)
    if include is None:
        return partial(_out, resource)
    sent_columns = False

    def encode(obj: Obj) -> Obj:
        nonlocal sent_columns
        table = _as_table(resource, [obj], None, include)
        if sent_columns:
            table["columnDefinitions"] = []
        sent_columns = True
        return table

    return encode


def _bookmark(resource: Resource, meta: Obj) -> Obj:
    return {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": meta}


def _out(resource: Resource, obj: Obj) -> Obj:
    return {"kind": resource.kind, "apiVersion": resource.api_version, **obj}


class ApiServer:
    """The API's request handling over a :class:`Store`.

    ``token``: the bearer token clients must present (None accepts any).
    ``log_dir``: where the kubelet writes container logs, read for ``pods/log``.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        token: str | None = None,
        log_dir: Path | None = None,
        bookmark_interval: float = 10.0,
    ) -> None:
        self.store = store or Store()
        self.token = token
        self.log_dir = log_dir
        self.bookmark_interval = bookmark_interval
        self.lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests: Counter[str] = Counter()
        """Client requests served (not the emulated scheduler's or kubelet's), by
        ``METHOD path-with-names-elided``, for benchmarks."""
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.store.create(
                "namespaces", admission.default("namespaces", {"metadata": {"name": ns}})
            )

    # -- application ------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_get("/version", self._version)
        for probe in ("/healthz", "/readyz", "/livez"):
            app.router.add_get(probe, self._ok)
        app.router.add_get("/api", self._api_versions)
        app.router.add_get("/api/v1", self._resource_list)
        app.router.add_get("/apis", self._groups)
        app.router.add_get("/apis/{group}/v1", self._resource_list)
        app.router.add_route("*", "/api/v1/{tail:.+}", self._dispatch)
        app.router.add_route("*", "/apis/{group}/v1/{tail:.+}", self._dispatch)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        self.store.close_watches()
        for task in list(self._tasks):
            task.cancel()

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.token is not None and request.path not in PUBLIC_PATHS:
            supplied = request.headers.get("Authorization", "")
            if not secrets.compare_digest(supplied, f"Bearer {self.token}"):
                return web.json_response(
                    status_body(401, "Unauthorized", "Unauthorized"), status=401
                )
        # The emulated cluster's own scheduler and kubelet are not counted: only clients.
        if not request.headers.get("User-Agent", "").startswith(CLUSTER_USER_AGENT):
            self.requests[_route_of(request)] += 1
        try:
            return await handler(request)
        except ApiError as exc:
            return web.json_response(
                status_body(exc.code, exc.reason, exc.message, exc.details), status=exc.code
            )
        except admission.Invalid as exc:
            causes = [
                {"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in exc.causes
            ]
            body = status_body(
                422, "Invalid", str(exc), {"name": exc.name, "kind": exc.kind, "causes": causes}
            )
            return web.json_response(body, status=422)

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response(VERSION)

    async def _api_versions(self, request: web.Request) -> web.Response:
        host = request.host
        return web.json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
            }
        )

    async def _groups(self, request: web.Request) -> web.Response:
        groups = []
        for name in sorted({r.group for r in RESOURCES.values() if r.group}):
            version = {"groupVersion": f"{name}/v1", "version": "v1"}
            groups.append({"name": name, "versions": [version], "preferredVersion": version})
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def _resource_list(self, request: web.Request) -> web.Response:
        group = request.match_info.get("group", "")
        if not any(r.group == group for r in RESOURCES.values()):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        entries = []
        for r in RESOURCES.values():
            if r.group != group:
                continue
            verbs = [
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
            entries.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": verbs,
                    **({"shortNames": [r.short]} if r.short else {}),
                }
            )
            for sub in sorted(r.subresources):
                sub_verbs = {"binding": ["create"], "log": ["get"]}.get(
                    sub, ["get", "patch", "update"]
                )
                entries.append(
                    {
                        "name": f"{r.plural}/{sub}",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": "Binding" if sub == "binding" else r.kind,
                        "verbs": sub_verbs,
                    }
                )
        return web.json_response(
            {
                "kind": "APIResourceList",
                # As a real server: only a named group's list carries apiVersion.
                **({"apiVersion": "v1"} if group else {}),
                "groupVersion": f"{group}/v1" if group else "v1",
                "resources": entries,
            }
        )

    # -- routing ----------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = request.match_info["tail"].strip("/").split("/")
        namespace: str | None = None
        if parts[0] == "namespaces" and len(parts) >= 3 and parts[2] not in ("status", "finalize"):
            namespace, parts = parts[1], parts[2:]
        plural = parts[0]
        resource = RESOURCES.get(plural)
        if (
            resource is None
            or resource.group != request.match_info.get("group", "")
            or len(parts) > 3
            or (namespace is not None and not resource.namespaced)
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = parts[1] if len(parts) > 1 else None
        sub = parts[2] if len(parts) > 2 else None
        if sub is not None and sub not in resource.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        method = request.method
        if name is None:
            if method == "GET":
                if request.query.get("watch") in _TRUE:
                    return await self._watch(request, resource, namespace)
                listed = self._list(request, resource, namespace)
                if (include := _table_include(request)) is not None:
                    table = _as_table(resource, listed["items"], listed["metadata"], include)
                    return web.json_response(table)
                return web.json_response(listed)
            if method == "POST":
                return await self._create(request, resource, namespace)
            if method == "DELETE":
                return await self._delete_collection(request, resource, namespace)
        else:
            ns = namespace or ""
            if sub == "log" and method == "GET":
                return self._log(request, resource, ns, name)
            if sub == "binding" and method == "POST":
                return await self._bind(request, resource, ns, name)
            if method == "GET":
                obj = self._get(resource, ns, name)
                if sub is None and (include := _table_include(request)) is not None:
                    return web.json_response(_as_table(resource, [obj], None, include))
                return web.json_response(_out(resource, obj))
            if method == "PUT":
                return await self._replace(request, resource, ns, name, sub)
            if method == "PATCH":
                return await self._patch(request, resource, ns, name, sub)
            if method == "DELETE" and sub is None:
                return await self._delete(request, resource, ns, name)
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    # -- helpers ----------------------------------------------------------
    def _get(self, resource: Resource, namespace: str, name: str) -> Obj:
        obj = self.store.get(resource.plural, namespace, name)
        if obj is None:
            raise not_found(resource, name)
        return obj

    async def _body(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "BadRequest", "the request body is not valid JSON") from None

    def _require_namespace(self, namespace: str) -> None:
        if self.store.get("namespaces", "", namespace) is None:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )

    def _selector(self, request: web.Request) -> Selector:
        try:
            return Selector.parse(
                request.query.get("labelSelector"), request.query.get("fieldSelector")
            )
        except SelectorError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None

    # -- verbs ------------------------------------------------------------
    def _list(self, request: web.Request, resource: Resource, namespace: str | None) -> Obj:
        selector = self._selector(request)
        items = [o for o in self.store.list(resource.plural, namespace) if selector.matches(o)]
        meta: Obj = {"resourceVersion": str(self.store.rv)}
        start = 0
        if token := request.query.get("continue"):
            try:
                start = int(json.loads(base64.urlsafe_b64decode(token))["start"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "BadRequest", "invalid continue token") from None
        limit = int(request.query.get("limit") or 0)
        page = items[start : start + limit] if limit else items[start:]
        if limit and start + limit < len(items):
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"start": start + limit}).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        return {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version,
            "metadata": meta,
            "items": copy.deepcopy(page),
        }

    async def _watch(
        self, request: web.Request, resource: Resource, namespace: str | None
    ) -> web.StreamResponse:
        selector = self._selector(request)
        rv = request.query.get("resourceVersion", "")
        timeout = float(request.query.get("timeoutSeconds") or 0) or None
        bookmarks = request.query.get("allowWatchBookmarks") in _TRUE
        initial_events = request.query.get("sendInitialEvents") in _TRUE
        if initial_events:
            _check_watch_list(request.query.get("resourceVersionMatch"), bookmarks)
        encode = _watch_encoder(request, resource)
        # Register and read the backlog with no await in between, so no change
        # can fall between the two.
        watcher = self.store.watch(resource.plural, namespace, selector.matches)
        try:
            if initial_events or rv in ("", "0"):
                backlog = [
                    ("ADDED", o)
                    for o in self.store.list(resource.plural, namespace)
                    if selector.matches(o)
                ]
            else:
                try:
                    changes = self.store.since(int(rv))
                except ValueError:
                    raise ApiError(400, "BadRequest", f"invalid resource version {rv!r}") from None
                except Expired as exc:
                    changes = None
                    expired = str(exc)
                backlog = (
                    [] if changes is None else [e for c in changes if (e := watcher.translate(c))]
                )
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            if not initial_events and rv not in ("", "0") and changes is None:
                await self._send(response, "ERROR", status_body(410, "Expired", expired))
                return response
            for type_, obj in backlog:
                await self._send(response, type_, encode(obj))
            if initial_events:
                # The streaming list's end: the state just sent is the one at this version.
                meta = {
                    "resourceVersion": str(self.store.rv),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                }
                await self._send(response, "BOOKMARK", _bookmark(resource, meta))
            await self._stream(request, response, resource, watcher, timeout, bookmarks, encode)
            return response
        finally:
            self.store.unwatch(watcher)

    async def _send(self, response: web.StreamResponse, type_: str, obj: Obj) -> None:
        await response.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        resource: Resource,
        watcher: Any,
        timeout: float | None,
        bookmarks: bool,
        encode: Callable[[Obj], Obj],
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        next_bookmark = loop.time() + self.bookmark_interval
        while True:
            now = loop.time()
            if deadline is not None and now >= deadline:
                return
            if request.transport is None or request.transport.is_closing():
                return
            wait = min(x for x in (deadline, next_bookmark, now + 1.0) if x is not None) - now
            try:
                change = await asyncio.wait_for(watcher.queue.get(), timeout=max(wait, 0.01))
            except TimeoutError:
                if bookmarks and loop.time() >= next_bookmark:
                    next_bookmark = loop.time() + self.bookmark_interval
                    meta = {"resourceVersion": str(self.store.rv)}
                    with contextlib.suppress(ConnectionError):
                        await self._send(response, "BOOKMARK", _bookmark(resource, meta))
                continue
            if change is None:
                return
            event = watcher.translate(change)
            if event is not None:
                try:
                    await self._send(response, event[0], encode(event[1]))
                except ConnectionError:
                    return

    async def _create(
        self, request: web.Request, resource: Resource, namespace: str | None
    ) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be an object")
        async with self.lock:
            meta = body.setdefault("metadata", {})
            if resource.namespaced:
                ns = namespace or meta.get("namespace") or "default"
                if meta.get("namespace") not in (None, ns):
                    raise ApiError(
                        400,
                        "BadRequest",
                        "the namespace of the provided object does not match the namespace sent on "
                        "the request",
                    )
                self._require_namespace(ns)
                meta["namespace"] = ns
                if (nsobj := self.store.get("namespaces", "", ns)) and nsobj["status"].get(
                    "phase"
                ) == "Terminating":
                    raise ApiError(
                        403,
                        "Forbidden",
                        f"unable to create new content in namespace {ns} because it is being "
                        "terminated",
                    )
            else:
                meta.pop("namespace", None)
            for server_set in (
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
            ):
                meta.pop(server_set, None)
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(
                    secrets.choice(_NAME_CHARS) for _ in range(5)
                )
            obj = admission.default(resource.plural, body)
            admission.validate(resource.plural, resource.kind, obj)
            if self.store.get(resource.plural, meta.get("namespace", ""), meta["name"]) is not None:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{resource.plural} "{meta["name"]}" already exists',
                    {"name": meta["name"], "kind": resource.plural},
                )
            created = self.store.create(resource.plural, obj)
            return web.json_response(_out(resource, created), status=201)

    def _merge_update(self, resource: Resource, old: Obj, new: Obj, sub: str | None) -> Obj:
        """The stored object after an update of the main resource or its status."""
        new = copy.deepcopy(new)
        new_meta = new.setdefault("metadata", {})
        for key in (
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if key in old["metadata"]:
                new_meta[key] = old["metadata"][key]
            else:
                new_meta.pop(key, None)
        if sub == "status":
            result = copy.deepcopy(old)
            result["status"] = new.get("status", {})
            return result
        if "status" in old and resource.subresources and "status" in resource.subresources:
            new["status"] = copy.deepcopy(old["status"])
        if resource.plural == "pods":
            admission.check_pod_update(old, new)
        admission.validate(resource.plural, resource.kind, new)
        return new

    async def _finish_update(self, resource: Resource, old: Obj, new: Obj) -> web.Response:
        meta = new["metadata"]
        # An update that removes the last finalizer of an object being deleted
        # completes the deletion (a pod only once its grace period is zero).
        released = meta.get("deletionTimestamp") and not meta.get("finalizers")
        if released and (resource.plural != "pods" or meta.get("deletionGracePeriodSeconds") == 0):
            return web.json_response(_out(resource, self.store.delete(resource.plural, new)))
        return web.json_response(_out(resource, self.store.update(resource.plural, new, old)))

    async def _replace(
        self, request: web.Request, resource: Resource, ns: str, name: str, sub: str | None
    ) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be an object")
        async with self.lock:
            old = self._get(resource, ns, name)
            if (given := body.get("metadata", {}).get("name")) not in (None, name):
                raise ApiError(
                    400,
                    "BadRequest",
                    f"the name of the object ({given}) does not match the name on the URL ({name})",
                )
            wanted = body.get("metadata", {}).get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise conflict(resource, name)
            new = self._merge_update(resource, old, body, sub)
            return await self._finish_update(resource, old, new)

    async def _patch(
        self, request: web.Request, resource: Resource, ns: str, name: str, sub: str | None
    ) -> web.Response:
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith(APPLY_PATCH):
            raise ApiError(
                415, "UnsupportedMediaType", "server-side apply is not supported by the emulator"
            )
        body = await self._body(request)
        async with self.lock:
            old = self._get(resource, ns, name)
            try:
                patched = apply_patch(content_type, copy.deepcopy(old), body)
            except PatchError as exc:
                code = 415 if "unsupported patch type" in str(exc) else 422
                raise ApiError(
                    code, "UnsupportedMediaType" if code == 415 else "Invalid", str(exc)
                ) from None
            wanted = patched.get("metadata", {}).get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise conflict(resource, name)
            new = self._merge_update(resource, old, patched, sub)
            return await self._finish_update(resource, old, new)

    async def _bind(
        self, request: web.Request, resource: Resource, ns: str, name: str
    ) -> web.Response:
        body = await self._body(request)
        target = (body.get("target") or {}) if isinstance(body, dict) else {}
        node = target.get("name")
        if target.get("kind", "Node") != "Node" or not node:
            raise ApiError(400, "BadRequest", "a binding's target must name a Node")
        async with self.lock:
            old = self._get(resource, ns, name)
            if old["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    409, "Conflict", f"pod {name} is being deleted, cannot be assigned to a host"
                )
            if old["spec"].get("nodeName"):
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is '
                    f'already assigned to node "{old["spec"]["nodeName"]}"',
                )
            new = copy.deepcopy(old)
            new["spec"]["nodeName"] = node
            conditions = [
                c for c in new["status"].get("conditions", []) if c.get("type") != "PodScheduled"
            ]
            conditions.append(
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": now_iso(),
                }
            )
            new["status"]["conditions"] = conditions
            self.store.update("pods", new, old)
        return web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
            status=201,
        )

    async def _delete(
        self, request: web.Request, resource: Resource, ns: str, name: str
    ) -> web.Response:
        options: Obj = {}
        if request.can_read_body:
            body = await self._body(request)
            options = body if isinstance(body, dict) else {}
        grace_param = request.query.get("gracePeriodSeconds", options.get("gracePeriodSeconds"))
        async with self.lock:
            old = self._get(resource, ns, name)
            uid = (options.get("preconditions") or {}).get("uid")
            if uid and uid != old["metadata"]["uid"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: UID in precondition: {uid}, "
                    f"UID in object meta: {old['metadata']['uid']}",
                )
            if resource.plural == "namespaces":
                return web.json_response(_out(resource, self._terminate_namespace(old)))
            if resource.plural == "pods":
                return web.json_response(_out(resource, self._delete_pod(old, grace_param)))
            if old["metadata"].get("finalizers"):
                if old["metadata"].get("deletionTimestamp"):
                    return web.json_response(_out(resource, old))
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now_iso()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                return web.json_response(
                    _out(resource, self.store.update(resource.plural, new, old))
                )
            return web.json_response(_out(resource, self.store.delete(resource.plural, old)))

    def _delete_pod(self, old: Obj, grace_param: Any) -> Obj:
        spec, meta = old["spec"], old["metadata"]
        grace = (
            int(grace_param)
            if grace_param is not None
            else int(spec.get("terminationGracePeriodSeconds", 30))
        )
        terminal = old.get("status", {}).get("phase") in ("Succeeded", "Failed")
        # Like the real server: a pod no kubelet runs (unbound or finished) goes at once.
        if (grace <= 0 or not spec.get("nodeName") or terminal) and not meta.get("finalizers"):
            return self.store.delete("pods", old)
        current = meta.get("deletionGracePeriodSeconds")
        if current is not None and grace >= current:
            return old
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = (
            datetime.now(UTC) + timedelta(seconds=max(grace, 0))
        ).strftime("%Y-%m-%dT%H:%M:%SZ")
        new["metadata"]["deletionGracePeriodSeconds"] = max(grace, 0)
        return self.store.update("pods", new, old)

    def _terminate_namespace(self, old: Obj) -> Obj:
        if old["status"].get("phase") == "Terminating":
            return old
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = now_iso()
        new["status"]["phase"] = "Terminating"
        updated = self.store.update("namespaces", new, old)
        task = asyncio.get_running_loop().create_task(
            self._drain_namespace(old["metadata"]["name"])
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return updated

    async def _drain_namespace(self, ns: str) -> None:
        """The namespace controller: delete everything in it, then the namespace."""
        while True:
            async with self.lock:
                remaining = 0
                for plural, resource in RESOURCES.items():
                    if not resource.namespaced:
                        continue
                    for obj in list(self.store.list(plural, ns)):
                        remaining += 1
                        if plural == "pods":
                            self._delete_pod(obj, None)
                        elif not obj["metadata"].get("deletionTimestamp"):
                            self.store.delete(plural, obj)
                if remaining == 0:
                    nsobj = self.store.get("namespaces", "", ns)
                    if nsobj is not None:
                        self.store.delete("namespaces", nsobj)
                    return
            await asyncio.sleep(0.2)

    async def _delete_collection(
        self, request: web.Request, resource: Resource, namespace: str | None
    ) -> web.Response:
        selector = self._selector(request)
        async with self.lock:
            for obj in [
                o for o in self.store.list(resource.plural, namespace) if selector.matches(o)
            ]:
                if resource.plural == "pods":
                    self._delete_pod(obj, request.query.get("gracePeriodSeconds"))
                else:
                    self.store.delete(resource.plural, obj)
        return web.json_response(self._list(request, resource, namespace))

    def _log(self, request: web.Request, resource: Resource, ns: str, name: str) -> web.Response:
        pod = self._get(resource, ns, name)
        containers = [c["name"] for c in pod["spec"].get("containers", [])]
        container = request.query.get("container") or (
            containers[0] if len(containers) == 1 else None
        )
        if container is None:
            raise ApiError(
                400,
                "BadRequest",
                f"a container name must be specified for pod {name}, choose one of: {containers}",
            )
        if container not in containers:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        path = self.log_dir / ns / name / f"{container}.log" if self.log_dir else None
        if path is None or not path.exists():
            raise ApiError(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating',
            )
        lines = path.read_text(errors="replace").splitlines(keepends=True)
        if tail := request.query.get("tailLines"):
            lines = lines[-int(tail) :]
        return web.Response(text="".join(lines), content_type="text/plain")
