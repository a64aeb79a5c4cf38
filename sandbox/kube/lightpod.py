"""Light pods: a minimal single-user server per pod, all in the kubelet's own process.

For load tests (``sovereign_hub.sandbox.loadtest``) a JupyterLab per pod is far too
heavy for a thousand pods on two cores. In light mode the process kubelet runs
no process for a pod: it serves, on the pod's own address and port, the part of
a single-user server that the hub, the proxy and a load generator meet:

- ``<prefix>api``: the server's version, unauthenticated (what the hub and the
  readiness probe ask);
- ``<prefix>api/status``: the server's status, for a request that carries a
  token the hub accepts for this server's user (checked against the hub's
  ``/hub/api/user``, cached as jupyterhub-singleuser caches it);
- activity: ``POST /hub/api/users/<user>/activity`` with the server's own
  token, at start and every ``JUPYTERHUB_ACTIVITY_INTERVAL`` seconds, as
  jupyterhub-singleuser reports it.

Everything else answers 404. There are no kernels, no contents, no terminals:
this is an emulation for load, not a notebook. Each pod is one
:class:`LightServer` (an aiohttp site) in the kubelet's event loop; stopping it
stands in for the container exiting with 0 (SIGTERM honoured at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

VERSION = "2.14.0"
"""The jupyter_server version the light server reports on ``/api``."""
TOKEN_CACHE_SECONDS = 300.0


class LightServer:
    """One pod's minimal single-user server; quacks like the process a kubelet waits on."""

    def __init__(self, env: dict[str, str], ip: str, session: aiohttp.ClientSession) -> None:
        self.env = env
        self.ip = ip
        self.session = session
        self.prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        self.user = env.get("JUPYTERHUB_USER", "")
        self.server_name = env.get("JUPYTERHUB_SERVER_NAME", "")
        self.api_url = env.get("JUPYTERHUB_API_URL", "").rstrip("/")
        self.started = datetime.now(UTC).isoformat()
        self.pid = os.getpid()
        self.returncode: int | None = None
        self._stopped = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._reporter: asyncio.Task[None] | None = None
        self._tokens: dict[str, float] = {}

    @property
    def port(self) -> int:
        url = self.env.get("JUPYTERHUB_SERVICE_URL", "")
        return urlsplit(url).port or 8888

    async def start(self) -> str | None:
        """Serve; or, when the address cannot be bound, exit 1 at once and return what a
        single-user server would print, as jupyter-server exits when its port is taken."""
        app = web.Application()
        app.router.add_get(f"{self.prefix}api", self._version)
        app.router.add_get(f"{self.prefix}api/status", self._status)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.ip, self.port).start()
        except OSError as exc:
            await self._runner.cleanup()
            self.returncode = 1
            self._stopped.set()
            return f"ERROR: the server could not listen on {self.ip}:{self.port}: {exc.strerror}"
        self._reporter = asyncio.create_task(self._report_activity())
        return None

    async def wait(self) -> int:
        await self._stopped.wait()
        return self.returncode or 0

    async def stop(self) -> None:
        """SIGTERM: stop serving and exit 0."""
        if self.returncode is not None:
            return
        if self._reporter:
            self._reporter.cancel()
        if self._runner:
            await self._runner.cleanup()
        self.returncode = 0
        self._stopped.set()

    # -- handlers ------------------------------------------------------------
    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def _status(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("token ").strip()
        if not token or not await self._accepted(token):
            return web.json_response({"message": "Forbidden"}, status=403)
        return web.json_response(
            {"started": self.started, "last_activity": _now(), "connections": 0, "kernels": 0}
        )

    async def _accepted(self, token: str) -> bool:
        # A token is accepted when the hub says it belongs to this server's user.
        if time.monotonic() - self._tokens.get(token, -TOKEN_CACHE_SECONDS) < TOKEN_CACHE_SECONDS:
            return True
        try:
            async with self.session.get(
                f"{self.api_url}/user", headers={"Authorization": f"token {token}"}
            ) as r:
                ok = r.status == 200 and (await r.json()).get("name") == self.user
        except (aiohttp.ClientError, TimeoutError):
            return False
        if ok:
            self._tokens[token] = time.monotonic()
        return ok

    async def _report_activity(self) -> None:
        interval = float(self.env.get("JUPYTERHUB_ACTIVITY_INTERVAL", "300"))
        headers = {"Authorization": f"token {self.env.get('JUPYTERHUB_API_TOKEN', '')}"}
        while True:
            now = _now()
            body = {"servers": {self.server_name: {"last_activity": now}}, "last_activity": now}
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.session.post(
                    f"{self.api_url}/users/{self.user}/activity", json=body, headers=headers
                ):
                    pass
            await asyncio.sleep(interval)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
