"""The region's entry point for browsers: a second listener of the gateway, with no
client certificate, so a user's notebook traffic stays in the user's region.

Who is let in is not the gateway's decision: every notebook server checks each
request itself with JupyterHub's OAuth (the hub is the authorization server,
and the server's cookie is this host's), as it does behind the hub's own
proxy. The gateway routes and terminates TLS, and refuses (404) any path that
is not a server running in its own namespace of its own cluster: a user of
another region, a stopped server, anything outside ``<base>user/``. So the
entry point exposes nothing the hub's proxy does not, and less.

What it adds to a forwarded request: ``X-Forwarded-Proto``, ``-Host`` and
``-For``, as configurable-http-proxy adds them, so a server behind it sees the
same headers by either way in.
"""

from __future__ import annotations

from aiohttp import web

from .proxy import TABLE, add_session, forward, lookup
from .routes import RouteTable

HUB_URL: web.AppKey[str] = web.AppKey("hub_url", str)


def forwarded_headers(request: web.Request) -> dict[str, str]:
    """The ``X-Forwarded-*`` headers for ``request``, as configurable-http-proxy sets them
    (its ``xfwd`` option): the client's address appended to any earlier ones."""
    peer = request.remote or ""
    earlier = request.headers.get("X-Forwarded-For", "")
    return {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": request.host,
        "X-Forwarded-For": f"{earlier}, {peer}" if earlier else peer,
    }


async def entry(request: web.Request) -> web.StreamResponse:
    """Forward a browser's request for a server running in this region; refuse the rest."""
    _, found = lookup(request)
    if found is None:
        hub = request.app[HUB_URL]
        where = f" Go to the hub, {hub}, to find or start your server." if hub else ""
        return web.json_response(
            {"message": "No server for this path runs in this region." + where}, status=404
        )
    return await forward(request, found.target + request.raw_path, forwarded_headers(request))


def make_entry_app(table: RouteTable, hub_url: str = "") -> web.Application:
    """The entry point's application over the gateway's own ``table``; ``hub_url`` (the
    hub's public URL) is named to a browser that asks for a server not running here."""
    app = web.Application()
    app[TABLE] = table
    app[HUB_URL] = hub_url.rstrip("/")
    add_session(app)
    app.router.add_route("*", "/{tail:.*}", entry)
    return app
