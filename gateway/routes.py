"""Which pod serves which URL prefix: a pure view of KubeSpawner's pods.

KubeSpawner labels every notebook pod ``component=singleuser-server`` and
annotates it with the user's and the server's names
(``hub.jupyter.org/username``, ``hub.jupyter.org/servername``); its container
port is named ``notebook-port``. A pod gives a route once it is Running with an
IP and not being deleted: before that there is nothing to reach, after it the
IP may already belong to another pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

USERNAME = "hub.jupyter.org/username"
SERVERNAME = "hub.jupyter.org/servername"
PORT_NAME = "notebook-port"
DEFAULT_PORT = 8888
"""KubeSpawner's default ``port``, used when no container port is named ``notebook-port``."""


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
    the prefix.
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
        if old is not None and self._by_prefix.get(old.prefix) == old:
            del self._by_prefix[old.prefix]
        route = None if event == "DELETED" else route_of(pod, self.base_url)
        if route is not None:
            self._by_pod[name] = route
            self._by_prefix[route.prefix] = route

    def is_user_path(self, path: str) -> bool:
        """Whether ``path`` is under ``<base>user/``, where servers live."""
        return path.startswith(f"{self.base_url.rstrip('/')}/user/")

    def lookup(self, path: str) -> Route | None:
        """The route whose prefix ``path`` (the raw, escaped request path) falls under; a
        named server's prefix wins over its user's default server."""
        if not self.is_user_path(path):
            return None
        # A prefix has the form <base>user/<name>/ or <base>user/<name>/<server>/: try the
        # longer first. Both candidates are cut from the path, so this is two lookups.
        rest = path[len(self.base_url.rstrip("/")) + len("/user/") :]
        parts = rest.split("/")
        candidates = []
        if len(parts) >= 3:
            candidates.append("/".join(parts[:2]) + "/")
        candidates.append(parts[0] + "/")  # also /user/<name> without its slash
        head = f"{self.base_url.rstrip('/')}/user/"
        for candidate in candidates:
            route = self._by_prefix.get(head + candidate)
            if route is not None:
                return route
        return None

    def __len__(self) -> int:
        return len(self._by_prefix)
