"""The Kubernetes REST API over HTTP: routing, authentication and errors.

What a Kubernetes client sees is what it would see from a real API server, for
the resources in :data:`.store.RESOURCES`: discovery documents
(:mod:`.discovery`); get, list (label and field selectors,
``limit``/``continue``), create (with ``generateName``), replace with
optimistic concurrency, the three patch types (:mod:`.patch`), field validation
(:mod:`.decoding`), the ``status`` and ``binding`` subresources and graceful
deletion (:mod:`.verbs`); the OpenAPI v3 documents (:mod:`.openapi`); watches
(:mod:`.watchstream`); pod logs (:mod:`.podsubresources`); errors as
``Status`` objects. Bearer-token authentication guards every request but
``/healthz``-style probes and ``/version``. The control plane's controllers
(:mod:`.controllers`) run beside it on the same state.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from . import (
    admission,
    decoding,
    discovery,
    openapi,
    podsubresources,
    priority,
    protobuf,
    verbs,
    watchstream,
)
from .controllers import run_controller
from .controllers.garbagecollector import GarbageCollector
from .controllers.namespaces import NamespaceController
from .controllers.nodelifecycle import NodeLifecycleController
from .errors import NO_SUCH_RESOURCE, ApiError, bad_request, status_body
from .patch import APPLY_PATCH
from .selectors import Selector, SelectorError
from .store import RESOURCES, Resource, Store

VERSION = discovery.VERSION
CLUSTER_USER_AGENT = "sovereign-emulated-cluster"
# What a real cluster's system:public-info-viewer role lets anyone read, signed in or not.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/version", "/version/"})
_TRUE = watchstream.TRUE


def _route_of(request: web.Request) -> str:
    parts = request.path.strip("/").split("/")
    base = 2 if parts[0] == "api" else 3  # /api/v1/… or /apis/<group>/v1/…
    if len(parts) > base + 1 and parts[base] == "namespaces":
        parts[base + 1] = "{ns}"
    if len(parts) > base + 3:
        parts[base + 3] = "{name}"
    watch = " (watch)" if request.query.get("watch") in _TRUE else ""
    return f"{request.method} /{'/'.join(parts)}{watch}"


def _selector(request: web.Request, resource: Resource) -> Selector:
    try:
        return Selector.parse(
            request.query.get("labelSelector"), request.query.get("fieldSelector")
        ).for_resource(resource.plural)
    except SelectorError as exc:
        raise bad_request(str(exc)) from None


def _dry(request: web.Request) -> bool:
    return verbs.dry_run(request.query.getall("dryRun", []))


def _validation(request: web.Request) -> str:
    return decoding.field_validation(request.query.getall("fieldValidation", []))


def _answer(body: Any, warnings: list[str], status: int = 200) -> web.Response:
    """A JSON answer with each warning in its own ``Warning`` header, as apiserver writes
    them (code 299, no agent)."""
    response = web.json_response(body, status=status)
    for warning in warnings:
        response.headers.add("Warning", f"299 - {json.dumps(warning)}")
    return response


async def _body(request: web.Request) -> Any:
    if request.content_type == protobuf.PROTOBUF:
        try:
            return protobuf.decode(await request.read())
        except protobuf.Unsupported as exc:
            raise ApiError(415, "UnsupportedMediaType", str(exc)) from None
        except protobuf.Malformed as exc:
            raise bad_request(f"the protobuf body cannot be decoded: {exc}") from None
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("the request body is not valid JSON") from None


async def _delete_body(request: web.Request) -> bytes:
    """A DELETE's body as JSON (typed clients send their DeleteOptions in protobuf)."""
    if request.content_type == protobuf.PROTOBUF and request.can_read_body:
        return json.dumps(await _body(request)).encode()
    return await request.read()


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
        self._tasks: set[asyncio.Task[None]] = set()
        self.exec_runner: podsubresources.ExecRunner | None = None
        """How ``pods/exec`` reaches the pod's kubelet (None: no kubelet, as in --api-only)."""
        self.requests: Counter[str] = Counter()
        """Client requests served (not the emulated scheduler's or kubelet's), by
        ``METHOD path-with-names-elided``, for benchmarks."""
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.store.create(
                "namespaces", admission.default("namespaces", {"metadata": {"name": ns}})
            )
        for pc in priority.system_classes():
            self.store.create("priorityclasses", pc)

    # -- application ------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_get("/version", discovery.version)
        for probe in ("/healthz", "/readyz", "/livez"):
            app.router.add_get(probe, self._ok)
        app.router.add_get("/api", discovery.api_versions)
        app.router.add_get("/api/v1", discovery.group_resources)
        app.router.add_get("/apis", discovery.groups)
        app.router.add_get("/apis/{group}/v1", discovery.group_resources)
        app.router.add_get("/openapi/v3", openapi.index)
        app.router.add_get("/openapi/v3/{tail:.+}", openapi.group_version)
        app.router.add_route("*", "/api/v1/{tail:.+}", self._dispatch)
        app.router.add_route("*", "/apis/{group}/v1/{tail:.+}", self._dispatch)
        app.on_startup.append(self._start_controllers)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _start_controllers(self, app: web.Application) -> None:
        for reconcile in (NamespaceController(), NodeLifecycleController(), GarbageCollector()):
            task = asyncio.get_running_loop().create_task(run_controller(self.store, reconcile))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

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

    # -- routing ----------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = request.match_info["tail"].strip("/").split("/")
        namespace: str | None = None
        if parts[0] == "namespaces" and len(parts) >= 3 and parts[2] not in ("status", "finalize"):
            namespace, parts = parts[1], parts[2:]
        resource = RESOURCES.get(parts[0])
        if (
            resource is None
            or resource.group != request.match_info.get("group", "")
            or len(parts) > 3
            or (namespace is not None and not resource.namespaced)
        ):
            raise ApiError(404, "NotFound", NO_SUCH_RESOURCE)
        name = parts[1] if len(parts) > 1 else None
        sub = parts[2] if len(parts) > 2 else None
        if sub is not None and sub not in resource.subresources:
            raise ApiError(404, "NotFound", NO_SUCH_RESOURCE)
        if name is None:
            return await self._collection(request, resource, namespace)
        return await self._object(request, resource, namespace or "", name, sub)

    async def _collection(
        self, request: web.Request, resource: Resource, namespace: str | None
    ) -> web.StreamResponse:
        method = request.method
        if method == "GET":
            selector = _selector(request, resource)
            if request.query.get("watch") in _TRUE:
                return await watchstream.watch(
                    request, self.store, resource, namespace, selector, self.bookmark_interval
                )
            return web.json_response(self._list(request, resource, namespace, selector))
        if method == "POST":
            warnings: list[str] = []
            created = verbs.create(
                self.store,
                resource,
                namespace,
                await _body(request),
                dry=_dry(request),
                validation=_validation(request),
                warnings=warnings,
                manager=request.query.get("fieldManager", ""),
            )
            return _answer(verbs.out(resource, created), warnings, status=201)
        if method == "DELETE":
            selector = _selector(request, resource)
            options = verbs.delete_options(request.query, await _delete_body(request))
            verbs.delete_collection(self.store, resource, namespace, selector, options)
            listed = verbs.list_page(self.store, resource, namespace, selector)
            return web.json_response(listed)
        raise _not_allowed()

    def _list(
        self, request: web.Request, resource: Resource, namespace: str | None, selector: Selector
    ) -> Any:
        listed = verbs.list_page(
            self.store,
            resource,
            namespace,
            selector,
            limit=int(request.query.get("limit") or 0),
            continue_token=request.query.get("continue", ""),
        )
        if (include := watchstream.table_include(request)) is not None:
            return watchstream.as_table(resource, listed["items"], listed["metadata"], include)
        return listed

    async def _object(
        self, request: web.Request, resource: Resource, ns: str, name: str, sub: str | None
    ) -> web.StreamResponse:
        method = request.method
        if sub == "log" and method == "GET":
            pod = verbs.get(self.store, resource, ns, name)
            return await podsubresources.log(request, self.store, pod, self.log_dir)
        if sub == "exec" and method in ("GET", "POST"):
            pod = verbs.get(self.store, resource, ns, name)
            return await podsubresources.exec_(request, pod, self.exec_runner)
        if sub == "binding" and method == "POST":
            verbs.bind(self.store, ns, name, await _body(request))
            created = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
            return web.json_response({**created, "code": 201}, status=201)
        if method == "GET":
            obj = verbs.get(self.store, resource, ns, name)
            if sub is None and (include := watchstream.table_include(request)) is not None:
                return web.json_response(watchstream.as_table(resource, [obj], None, include))
            return web.json_response(verbs.out(resource, obj))
        warnings: list[str] = []
        if method == "PUT":
            body = await _body(request)
            replaced = verbs.replace(
                self.store,
                resource,
                ns,
                name,
                body,
                sub,
                dry=_dry(request),
                validation=_validation(request),
                warnings=warnings,
                manager=request.query.get("fieldManager", ""),
            )
            return _answer(verbs.out(resource, replaced), warnings)
        if method == "PATCH":
            content_type = request.headers.get("Content-Type", "")
            if content_type.startswith(APPLY_PATCH):
                return await self._apply(request, resource, ns, name, sub)
            if "force" in request.query:
                # ValidatePatchOptions: any value, even false, before the object is looked up.
                raise admission.Invalid(
                    verbs.PATCH_OPTIONS,
                    "",
                    [("force", "Forbidden: may not be specified for non-apply patch")],
                )
            body = await _body(request)
            patched = verbs.patch(
                self.store,
                resource,
                ns,
                name,
                content_type,
                body,
                sub,
                dry=_dry(request),
                validation=_validation(request),
                warnings=warnings,
                manager=request.query.get("fieldManager", ""),
            )
            return _answer(verbs.out(resource, patched), warnings)
        if method == "DELETE" and sub is None:
            options = verbs.delete_options(request.query, await _delete_body(request))
            deleted = verbs.delete(self.store, resource, ns, name, options)
            return web.json_response(verbs.out(resource, deleted))
        raise _not_allowed()

    async def _apply(
        self, request: web.Request, resource: Resource, ns: str, name: str, sub: str | None
    ) -> web.Response:
        if sub is not None:
            raise ApiError(
                415, "UnsupportedMediaType", f"the emulator applies only whole objects, not {sub}"
            )
        try:
            body = yaml.safe_load(await request.text())
        except yaml.YAMLError as exc:
            raise bad_request(f"the apply patch is not valid YAML: {exc}") from None
        warnings: list[str] = []
        obj, created = verbs.server_side_apply(
            self.store,
            resource,
            ns,
            name,
            body,
            manager=request.query.get("fieldManager", ""),
            force=_force(request.query.getall("force", [])),
            dry=_dry(request),
            validation=_validation(request),
            warnings=warnings,
        )
        return _answer(verbs.out(resource, obj), warnings, status=201 if created else 200)


def _force(values: list[str]) -> bool:
    """An apply's ``force`` as apimachinery converts a query bool: only absence, "0" and
    "false" (any case) are false; anything else, the empty string too, is true."""
    return bool(values) and values[0] != "0" and values[0].lower() != "false"


def _not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )
