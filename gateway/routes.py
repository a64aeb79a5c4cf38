"""Which pod serves which URL prefix: a pure view of KubeSpawner's pods.

KubeSpawner labels every notebook pod ``component=singleuser-server`` and
annotates it with the user's and the server's names
(``hub.jupyter.org/username``, ``hub.jupyter.org/servername``); its container
port is named ``notebook-port``. A pod gives a route once it is Running with an
IP and not being deleted: before that there is nothing to reach, after it the
IP may already belong to another pod.

Paths are matched as configurable-http-proxy matches them: percent-decoded
(``decodeURIComponent(new URL(req.url).pathname)``), against prefixes decoded
the same way, segment by segment, longest first. A path whose owner would
depend on who normalises it (dot segments, backslashes) is refused by
:func:`routing_path` instead: see its docstring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

USERNAME = "hub.jupyter.org/username"
SERVERNAME = "hub.jupyter.org/servername"
PORT_NAME = "notebook-port"
DEFAULT_PORT = 8888
"""KubeSpawner's default ``port``, used when no container port is named ``notebook-port``."""


_HEX = re.compile("[0-9A-Fa-f]{2}")


class AmbiguousPath(ValueError):
    """A request path the gateway refuses to route: see :func:`routing_path`."""


def routing_path(raw: str) -> str:
    """The path to route ``raw`` (the request's path, as sent, without its query) by: the
    percent-decoded path, which is what configurable-http-proxy routes on.

    CHP first parses the path as a URL, which resolves ``.`` and ``..`` segments (also
    written ``%2e``) and reads ``\\`` as ``/``, then decodes it. The pod is sent the raw
    path and normalises it its own way, so for such a path CHP's choice of route and the
    pod's idea of whose path it is can differ (``/user/alice/../bob/`` is bob's to CHP,
    alice's to a naive split). No URL JupyterHub or a browser makes has these (browsers
    resolve dot segments before sending), so they are refused rather than guessed at:
    :class:`AmbiguousPath` for dot segments, before or after decoding (``%2F..%2F``),
    backslashes, a leading ``//`` (a URL parser reads a host there), and bytes that are
    not UTF-8 or a ``%`` not followed by two hex digits (``decodeURIComponent`` throws on
    those). Without them, URL parsing changes nothing, and decoding is all CHP does.
    """
    if raw.startswith("//"):
        raise AmbiguousPath("a leading // in the path")
    if any(not _HEX.fullmatch(piece[:2]) for piece in raw.split("%")[1:]):
        raise AmbiguousPath("a % not followed by two hex digits")
    try:
        decoded = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise AmbiguousPath("percent-escapes that are not UTF-8") from None
    if "\\" in decoded:  # also an escaped one: CHP's trie would see it decoded
        raise AmbiguousPath("a backslash in the path")
    if any(segment in (".", "..") for segment in decoded.split("/")):  # also %2e, %2F..%2F
        raise AmbiguousPath("a . or .. segment in the path")
    return decoded


@dataclass(frozen=True)
class Route:
    """``prefix`` (as JupyterHub writes it, URL-escaped, ending in ``/``) served by ``pod``
    at ``target`` (``http://ip:port``)."""

    prefix: str
    target: str
    pod: str


def user_prefix(base_url: str, user: str, server: str = "") -> str:
    """The URL prefix JupyterHub gives ``user``'s server: ``<base>user/<name>/[<server>/]``,
    the names escaped as JupyterHub escapes them."""
    prefix = f"{base_url.rstrip('/')}/user/{quote(user, safe='@~')}/"
    return prefix + (f"{quote(server, safe='@~')}/" if server else "")


def _port(pod: dict[str, Any]) -> int:
    for container in pod.get("spec", {}).get("containers", []):
        for port in container.get("ports") or []:
            if port.get("name") == PORT_NAME:
                return int(port["containerPort"])
    return DEFAULT_PORT


def route_of(pod: dict[str, Any], base_url: str = "/") -> Route | None:
    """The route ``pod`` gives, or None while it has none (not running, no IP, being
    deleted, or not a notebook pod KubeSpawner annotated)."""
    meta = pod.get("metadata", {})
    status = pod.get("status", {})
    user = (meta.get("annotations") or {}).get(USERNAME)
    if not user or meta.get("deletionTimestamp"):
        return None
    if status.get("phase") != "Running" or not status.get("podIP"):
        return None
    server = (meta.get("annotations") or {}).get(SERVERNAME, "")
    ip = status["podIP"]
    host = f"[{ip}]" if ":" in ip else ip
    return Route(user_prefix(base_url, user, server), f"http://{host}:{_port(pod)}", meta["name"])


class RouteTable:
    """The routes of one namespace's pods, kept from the API server's list and watch events.

    Keyed by pod name, so a pod's deletion removes its own route only: when a
    user's new pod is running before the old one is gone, the new one keeps
    the prefix. Prefixes are looked up decoded, as configurable-http-proxy
    keeps them (its REST API decodes the route it is given).
    """

    def __init__(self, base_url: str = "/") -> None:
        self.base_url = base_url
        self._by_pod: dict[str, Route] = {}
        self._by_prefix: dict[str, Route] = {}

    def replace(self, pods: list[dict[str, Any]]) -> None:
        """Start again from a full listing (after a watch was lost)."""
        self._by_pod.clear()
        self._by_prefix.clear()
        for pod in pods:
            self.apply("ADDED", pod)

    def apply(self, event: str, pod: dict[str, Any]) -> None:
        """Take one watch event (ADDED, MODIFIED, DELETED) for ``pod``."""
        name = pod.get("metadata", {}).get("name", "")
        old = self._by_pod.pop(name, None)
        if old is not None and self._by_prefix.get(unquote(old.prefix)) == old:
            del self._by_prefix[unquote(old.prefix)]
        route = None if event == "DELETED" else route_of(pod, self.base_url)
        if route is not None:
            self._by_pod[name] = route
            self._by_prefix[unquote(route.prefix)] = route

    def is_user_path(self, path: str) -> bool:
        """Whether ``path`` is under ``<base>user/``, where servers live."""
        return path.startswith(f"{self.base_url.rstrip('/')}/user/")

    def lookup(self, path: str) -> Route | None:
        """The route whose prefix ``path`` (decoded: :func:`routing_path`) falls under, the
        longest first (a named server's prefix wins over its user's default server), whole
        segments only, with or without the prefix's final ``/``: as CHP's trie matches."""
        if not self.is_user_path(path):
            return None
        head = f"{self.base_url.rstrip('/')}/user/"
        parts = path[len(head) :].split("/")
        for end in range(len(parts), 0, -1):
            route = self._by_prefix.get(head + "/".join(parts[:end]) + "/")
            if route is not None:
                return route
        return None

    def __len__(self) -> int:
        return len(self._by_prefix)
