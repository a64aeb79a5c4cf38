"""Watches over HTTP: the backlog from a ``resourceVersion``, then changes as they happen.

Resume from a version (``410 Expired`` once the history is compacted),
bookmarks every ``bookmark_interval`` seconds, ``timeoutSeconds``, streaming
lists (``sendInitialEvents``, ended by a bookmark annotated
``k8s.io/initial-events-end``), and one-row Tables for ``kubectl get -w``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from functools import partial
from typing import Any

from aiohttp import web

from . import admission, tables
from .errors import bad_request, status_body
from .selectors import Selector
from .store import Expired, Obj, Resource, Store
from .verbs import out

TRUE = {"true", "1", "True"}


def check_watch_list(match: str | None, bookmarks: bool) -> None:
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


def table_include(request: web.Request) -> str | None:
    """The ``includeObject`` of a request that asks for a Table (kubectl's Accept header), or
    None when the client wants the objects themselves."""
    if not tables.wants_table(request.headers.get("Accept", "")):
        return None
    return request.query.get("includeObject", "Metadata")


def as_table(resource: Resource, objects: list[Obj], meta: Obj | None, include: str) -> Obj:
    """``objects`` as a Table; ``meta`` is the list's, or None for one object's version."""
    if meta is None:
        meta = {"resourceVersion": objects[0]["metadata"].get("resourceVersion", "")}
    return tables.table(resource.plural, [out(resource, o) for o in objects], meta, include)


def _encoder(request: web.Request, resource: Resource) -> Callable[[Obj], Obj]:
    """How each watched object is sent: as itself, or as a one-row Table when the client
    asked for tables (`kubectl get -w`). As kube-apiserver does, only the first Table
    carries the column definitions."""
    include = table_include(request)
    if include is None:
        return partial(out, resource)
    sent_columns = False

    def encode(obj: Obj) -> Obj:
        nonlocal sent_columns
        table = as_table(resource, [obj], None, include)
        if sent_columns:
            table["columnDefinitions"] = []
        sent_columns = True
        return table

    return encode


def _bookmark(resource: Resource, meta: Obj) -> Obj:
    return {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": meta}


async def _send(response: web.StreamResponse, type_: str, obj: Obj) -> None:
    await response.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")


async def watch(
    request: web.Request,
    store: Store,
    resource: Resource,
    namespace: str | None,
    selector: Selector,
    bookmark_interval: float,
) -> web.StreamResponse:
    rv = request.query.get("resourceVersion", "")
    timeout = float(request.query.get("timeoutSeconds") or 0) or None
    bookmarks = request.query.get("allowWatchBookmarks") in TRUE
    initial_events = request.query.get("sendInitialEvents") in TRUE
    if initial_events:
        check_watch_list(request.query.get("resourceVersionMatch"), bookmarks)
    encode = _encoder(request, resource)
    # Register and read the backlog with no await in between, so no change
    # can fall between the two.
    watcher = store.watch(resource.plural, namespace, selector.matches)
    try:
        expired = ""
        if initial_events or rv in ("", "0"):
            backlog = [
                ("ADDED", o) for o in store.list(resource.plural, namespace) if selector.matches(o)
            ]
        else:
            try:
                changes = store.since(int(rv))
            except ValueError:
                raise bad_request(f"invalid resource version {rv!r}") from None
            except Expired as exc:
                changes, expired = [], str(exc)
            backlog = [e for c in changes if (e := watcher.translate(c))]
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            if expired:
                await _send(response, "ERROR", status_body(410, "Expired", expired))
                return response
            for type_, obj in backlog:
                await _send(response, type_, encode(obj))
            if initial_events:
                # The streaming list's end: the state just sent is the one at this version.
                meta = {
                    "resourceVersion": str(store.rv),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                }
                await _send(response, "BOOKMARK", _bookmark(resource, meta))
        except ConnectionError:
            # A client that leaves during the backlog ends its watch, as it does
            # during the stream: a real API server logs no error for it.
            return response
        await _stream(
            request,
            response,
            store,
            resource,
            watcher,
            timeout,
            bookmarks,
            bookmark_interval,
            encode,
        )
        return response
    finally:
        store.unwatch(watcher)


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    store: Store,
    resource: Resource,
    watcher: Any,
    timeout: float | None,
    bookmarks: bool,
    bookmark_interval: float,
    encode: Callable[[Obj], Obj],
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout else None
    next_bookmark = loop.time() + bookmark_interval
    while True:
        now = loop.time()
        if deadline is not None and now >= deadline:
            return
        if request.transport is None or request.transport.is_closing():
            return
        wait = min(x for x in (deadline, next_bookmark, now + 1.0) if x is not None) - now
        try:
            async with asyncio.timeout(max(wait, 0.01)):
                change = await watcher.queue.get()
        except TimeoutError:
            if bookmarks and loop.time() >= next_bookmark:
                next_bookmark = loop.time() + bookmark_interval
                meta = {"resourceVersion": str(store.rv)}
                with contextlib.suppress(ConnectionError):
                    await _send(response, "BOOKMARK", _bookmark(resource, meta))
            continue
        if change is None:
            return
        event = watcher.translate(change)
        if event is not None:
            try:
                await _send(response, event[0], encode(event[1]))
            except ConnectionError:
                return
