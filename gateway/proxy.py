"""The gateway's reverse proxy: HTTP and WebSocket to the pod a route names.

Built on aiohttp, which the project already depends on: its server speaks
HTTP/1.1 and WebSocket, its client streams bodies and opens WebSockets, and
its TLS comes from the standard library's ``ssl`` (a server context with
``CERT_REQUIRED`` refuses any peer whose client certificate the given CA did
not sign, during the handshake, before a byte of HTTP is read).

What it forwards: the method, the raw path and query (routed by the decoded path, as
configurable-http-proxy routes it; see :func:`.routes.routing_path`), the body (streamed), and
the headers but the hop-by-hop ones, ``Host`` included (the notebook server
checks a WebSocket's ``Origin`` against it). What it logs: method, path
without its query (a query can carry a token), status and time; never a
header.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections.abc import Awaitable, Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from multidict import CIMultiDict

from .clients import admitted, peer_names
from .routes import AmbiguousPath, Route, RouteTable, routing_path

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length",
})  # fmt: skip
"""Headers that describe one connection, not the request (RFC 9110 7.6.1); content-length
is set again by whoever frames the body."""
WS_HANDSHAKE = frozenset({
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-protocol", "sec-websocket-accept",
})  # fmt: skip
"""Headers of one WebSocket handshake: each side of the gateway makes its own."""

TABLE: web.AppKey[RouteTable] = web.AppKey("table", RouteTable)
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
CLIENT_NAMES: web.AppKey[frozenset[str]] = web.AppKey("client_names", frozenset)
PUBLIC_URL: web.AppKey[str] = web.AppKey("public_url", str)


def server_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """TLS for the gateway: serve ``cert``/``key``, and require a client certificate signed
    by ``client_ca`` (the hub's), TLS 1.2 at least."""
    return _server_context(cert, key, [Path(client_ca).read_text()])


def _server_context(cert: str, key: str, client_cas: list[str] | None) -> ssl.SSLContext:
    """:func:`server_context` trusting the PEM texts ``client_cas``, or, with ``None``,
    :func:`public_context`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    for pem in client_cas or ():
        context.load_verify_locations(cadata=pem)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED if client_cas is not None else ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def public_context(cert: str, key: str) -> ssl.SSLContext:
    """TLS for the entry point for browsers: serve ``cert``/``key``, ask for no client
    certificate, TLS 1.2 at least."""
    return _server_context(cert, key, None)


class RenewedFiles:
    """Serves a renewed certificate from the next handshake on, on the same listening socket.

    A Secret volume swaps its files when the Secret changes (cert-manager renewing the
    gateway's certificate, a new client CA). :meth:`check` compares the files' (inode,
    mtime, size) with what was loaded and, on a change, builds a NEW context from them;
    the live one (``context``, which the listener holds) is never loaded into again: its
    ``sni_callback``, which OpenSSL calls for every ClientHello (with or without a server
    name), hands each handshake the newest context that loaded. OpenSSL leaves a context
    it failed to load a mismatched pair into unable to serve, so a pair caught half-way
    through a swap (the key not matching the certificate) fails only in the scratch
    context: the one in use stays, and the next check tries again. A new client CA is
    added to those trusted (each new context trusts every CA seen since the start); a CA is
    only dropped by a restart (a rollout), which is what removing trust should take.
    """

    def __init__(self, context: ssl.SSLContext, cert: str, key: str, client_ca: str | None) -> None:
        self.context, self.cert, self.key, self.client_ca = context, cert, key, client_ca
        self.seen = self._stats()
        self.client_cas = [Path(client_ca).read_text()] if client_ca else None
        self.current = context
        context.sni_callback = self._hand_over

    def _hand_over(self, connection: ssl.SSLObject, name: str | None, live: ssl.SSLContext) -> None:
        if self.current is not live:
            connection.context = self.current  # the certificate, key and CAs it loaded

    def _stats(self) -> tuple[tuple[int, int, int], ...]:
        def stat(path: str) -> tuple[int, int, int]:
            info = os.stat(path)
            return (info.st_ino, info.st_mtime_ns, info.st_size)

        files = (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())
        return tuple(stat(path) for path in files)

    def check(self) -> bool:
        """Build a new context when a file changed; whether one was put in use. A pair that
        does not load (half-written, a key not matching the certificate) is left for the
        next check, the context in use kept."""
        now = self._stats()  # before reading: a change after this is seen by the next check
        if now == self.seen:
            return False
        try:
            cas = self.client_cas
            if self.client_ca and cas is not None:
                pem = Path(self.client_ca).read_text()
                cas = cas if pem in cas else [*cas, pem]
            fresh = _server_context(self.cert, self.key, cas)
        except (ssl.SSLError, OSError, ValueError) as exc:
            log.warning("renewed TLS files not loaded yet: %s", type(exc).__name__)
            return False
        self.current, self.client_cas, self.seen = fresh, cas, now
        log.info("TLS certificate or client CA renewed: in use for new connections")
        return True

    async def follow(self, every: float = 30.0) -> None:
        """Check every ``every`` seconds until cancelled."""
        while True:
            await asyncio.sleep(every)
            try:
                self.check()
            except OSError as exc:  # a file missing for a moment during a swap
                log.warning("TLS files unreadable: %s", type(exc).__name__)


def _forwarded(headers: Any, *, drop: frozenset[str] = frozenset()) -> CIMultiDict[str]:
    """``headers`` without hop-by-hop ones (and those ``Connection`` names) and ``drop``."""
    named = {h.strip().lower() for h in headers.get("Connection", "").split(",") if h.strip()}
    return CIMultiDict(
        (k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP | named | drop
    )


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def _pump(
    source: Any, send_text: Callable[[str], Awaitable[None]],
    send_bytes: Callable[[bytes], Awaitable[None]], close: Callable[..., Awaitable[Any]],
) -> None:  # fmt: skip
    """Copy messages from ``source`` until it closes, then close the other side."""
    async for message in source:
        if message.type == aiohttp.WSMsgType.TEXT:
            await send_text(message.data)
        elif message.type == aiohttp.WSMsgType.BINARY:
            await send_bytes(message.data)
        else:
            break
    await close()


async def _websocket(
    request: web.Request, url: str, extra: Mapping[str, str] | None = None
) -> web.StreamResponse:
    protocols = [
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    ]
    headers = _forwarded(request.headers, drop=WS_HANDSHAKE)
    headers.update(extra or {})
    try:
        upstream = await request.app[SESSION].ws_connect(
            url, headers=headers, protocols=protocols, autoping=True
        )
    except aiohttp.WSServerHandshakeError as exc:
        return web.Response(status=exc.status or 502, text="upstream refused the WebSocket")
    except aiohttp.ClientError:
        return web.Response(status=502, text="the server is not reachable")
    downstream = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (), autoping=True
    )
    await downstream.prepare(request)
    try:
        await asyncio.gather(
            _pump(downstream, upstream.send_str, upstream.send_bytes, upstream.close),
            _pump(upstream, downstream.send_str, downstream.send_bytes, downstream.close),
        )
    finally:
        await upstream.close()
        await downstream.close()
    return downstream


async def _http(
    request: web.Request, url: str, extra: Mapping[str, str] | None = None
) -> web.StreamResponse:
    headers = _forwarded(request.headers)
    headers.update(extra or {})
    try:
        upstream = await request.app[SESSION].request(
            request.method,
            url,
            headers=headers,
            data=request.content if request.body_exists else None,
            allow_redirects=False,
            auto_decompress=False,
        )
    except aiohttp.ClientError:
        return web.Response(status=502, text="the server is not reachable")
    async with upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        response.headers.update(_forwarded(upstream.headers))
        if "Content-Length" in upstream.headers and "Transfer-Encoding" not in upstream.headers:
            response.content_length = int(upstream.headers["Content-Length"])
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
    return response


RETRY_AFTER = 2
"""Seconds a client is asked to wait when a user's path has no running pod yet."""


def lookup(request: web.Request) -> tuple[str, Route | None]:
    """The request's path as CHP decodes it, and the running server's route it falls under
    (None: no server's). A path the hub's proxy and the pod could read as different users'
    is refused with 400 (:func:`.routes.routing_path`)."""
    try:
        path = routing_path(request.raw_path.split("?", 1)[0])
    except AmbiguousPath as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"message": f"refused: {exc}"}), content_type="application/json"
        ) from None
    return path, request.app[TABLE].lookup(path)


async def route(request: web.Request) -> web.StreamResponse:
    """Forward ``request`` to the pod its path names.

    A ``/user/…`` path with no running pod gets 503 with ``Retry-After``, not 404:
    JupyterHub's check that a new server is up (``wait_for_http_server``) takes any answer
    below 500 as "up", and this gateway may see the pod Running a moment after the hub
    does. Any other path is not a server's, so 404. A path the hub's proxy and the pod
    could read as different users' is refused with 400 (:func:`.routes.routing_path`).
    """
    path, found = lookup(request)
    if found is None:
        if request.app[TABLE].is_user_path(path):
            return web.json_response(
                {"message": "no running server for this path in this region's gateway (yet)"},
                status=503,
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        return web.json_response({"message": "not a server's path"}, status=404)
    public = request.app[PUBLIC_URL]
    if public and _browser_visit(request):
        # The region has an entry point for browsers: send them there, so their session
        # (and the OAuth dance that starts it) stays in the region. Only a redirect crosses.
        raise web.HTTPFound(public + request.raw_path)
    return await forward(request, found.target + request.raw_path)


async def forward(
    request: web.Request, url: str, extra: Mapping[str, str] | None = None
) -> web.StreamResponse:
    """Relay ``request`` (HTTP or WebSocket) to ``url`` on a pod, with ``extra`` headers."""
    if _is_websocket(request):
        return await _websocket(request, url.replace("http://", "ws://", 1), extra)
    return await _http(request, url, extra)


def _browser_visit(request: web.Request) -> bool:
    """A browser's navigation, sent by the hub's proxy: a GET or HEAD with no
    ``Authorization`` header, not a WebSocket, that a browser marks as a navigation
    (``Sec-Fetch-Mode: navigate``) or that asks for a page (``Accept`` naming
    ``text/html``). Such a request can carry no session for the server (its cookie is the
    regional host's), so redirecting it loses nothing. Anything else is forwarded: a client
    with a token, and a plain GET such as JupyterHub's ``wait_for_http_server``, which
    takes any answer below 500 as "up" and so must get the pod's answer, not a redirect."""
    if request.method not in ("GET", "HEAD") or "Authorization" in request.headers:
        return False
    if _is_websocket(request):
        return False
    mode = request.headers.get("Sec-Fetch-Mode", "").strip().lower()
    return mode == "navigate" or (
        not mode and "text/html" in request.headers.get("Accept", "").lower()
    )


class AccessLog(AbstractAccessLogger):
    """One line per request: method, path without its query, status, milliseconds."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, duration: float) -> None:
        self.logger.info(
            "%s %s %s %.1fms", request.method, request.path, response.status, duration * 1000
        )


@web.middleware
async def allowed_clients_only(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Refuse (403) a client whose certificate, though the client CA signed it, names none
    of the allowed client names (:mod:`.clients`)."""
    allowed = request.app[CLIENT_NAMES]
    peercert = request.transport.get_extra_info("peercert") if request.transport else None
    if not admitted(peercert, allowed):
        # Names are not secrets, and they tell an operator which certificate to fix.
        log.warning(
            "refused a client certificate naming %s: not among the allowed client names",
            ", ".join(peer_names(peercert)) or "nothing",
        )
        return web.json_response(
            {"message": "this client certificate is not allowed to use the gateway"},
            status=403,
        )
    return await handler(request)


def make_app(
    table: RouteTable, client_names: Collection[str] = (), public_url: str = ""
) -> web.Application:
    """The gateway's application: every path goes through :func:`route`, for clients
    whose certificate names one of ``client_names`` (any the CA signed, when empty). With
    ``public_url`` (the region's entry point for browsers), a browser's visit to a running
    server is redirected there."""
    app = web.Application(middlewares=[allowed_clients_only])
    app[TABLE] = table
    app[CLIENT_NAMES] = frozenset(client_names)
    app[PUBLIC_URL] = public_url.rstrip("/")
    add_session(app)
    app.router.add_route("*", "/{tail:.*}", route)
    return app


def add_session(app: web.Application) -> None:
    """Give ``app`` the client session its requests are relayed with."""

    async def session(app: web.Application) -> Any:
        # No cookie jar: cookies belong to the user's browser and pass through as headers.
        app[SESSION] = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(sock_connect=10)
        )
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session)


def health_app(ready: Callable[[], bool]) -> web.Application:
    """A plain-HTTP health endpoint for the kubelet's probes (it holds no client
    certificate): 200 once the first listing of pods is in, 503 before."""

    async def healthz(request: web.Request) -> web.Response:
        ok = ready()
        return web.Response(status=200 if ok else 503, text="ok" if ok else "not synced")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    return app
