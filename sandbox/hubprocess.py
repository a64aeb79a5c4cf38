"""A real JupyterHub (and its configurable-http-proxy) in a subprocess.

Used by the integration tests, the benchmarks and the sandbox: it writes a
loopback-only base configuration, appends the caller's, starts ``jupyterhub``
and waits until ``/hub/health`` answers.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from sovereign_hub.processes import stop_process

ROOT = Path(__file__).resolve().parent.parent
CHP = Path(
    os.environ.get("SOVEREIGN_CHP", ROOT / "node_modules" / ".bin" / "configurable-http-proxy")
)
"""configurable-http-proxy, as `npm ci` installs it; SOVEREIGN_CHP names another."""
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Hub:
    """Starts ``jupyterhub`` with ``config`` appended to a loopback-only base config.

    ``self.token`` belongs to a service with the admin role, for the REST API.
    """

    def __init__(
        self, workdir: Path, config: str, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        if not CHP.exists():
            raise RuntimeError(f"{CHP} is missing: run `npm ci` (make install does)")
        self.workdir = workdir
        self.port = port or free_port()
        self.hub_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        workdir.mkdir(parents=True, exist_ok=True)
        base = f"""
c = get_config()  # noqa
c.JupyterHub.bind_url = {self.url!r}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {self.hub_port}
c.JupyterHub.db_url = "sqlite:///{workdir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{workdir}/cookie_secret"
c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
c.JupyterHub.services = [{{"name": "test-admin", "api_token": {self.token!r}}}]
c.JupyterHub.load_roles = [{{"name": "admin", "services": ["test-admin"]}}]
c.JupyterHub.cleanup_servers = True
"""
        (workdir / "jupyterhub_config.py").write_text(base + config)
        self.log_path = workdir / "jupyterhub.log"
        full_env = {**os.environ, **(env or {})}
        full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv: our venv's jupyterhub
            [str(BIN / "jupyterhub"), "-f", str(workdir / "jupyterhub_config.py")],
            cwd=workdir,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()  # never leave a half-started hub (and its proxy) behind
            raise

    def _wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyterhub exited ({self.process.returncode}):\n{self.logs()}")
            try:
                if requests.get(f"{self.url}/hub/health", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"jupyterhub not healthy after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}", **kwargs.pop("headers", {})}
        timeout = kwargs.pop("timeout", 30)
        url = f"{self.url}/hub/api{path}"
        return requests.request(method, url, headers=headers, timeout=timeout, **kwargs)

    def wait_for_server(self, user: str, ready: bool = True, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        model: dict[str, Any] = {}
        while time.monotonic() < deadline:
            model = self.api("GET", f"/users/{user}").json()
            server = model.get("servers", {}).get("")
            if (server is not None and server.get("ready")) == ready and (ready or not server):
                return model
            time.sleep(0.25)
        raise AssertionError(
            f"server of {user} not ready={ready} after {timeout}s: {model}\n{self.logs()}"
        )

    def stop(self) -> None:
        stop_process(self.process, timeout=30)
        self._log.close()
