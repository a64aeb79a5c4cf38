"""A real OpenID Connect provider process (oidc-provider-mock) on loopback.

For the sandbox's demo users and the authenticator's end-to-end tests: it
serves discovery, JWKS, an authorization form (log in by posting a ``sub``),
token and userinfo endpoints, and ``PUT /users/<sub>`` to change a user's
claims while it runs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from sovereign_hub.processes import stop_process

from .hubprocess import free_port


class OidcProvider:
    def __init__(
        self,
        users: list[dict[str, Any]],
        log_path: Path,
        *,
        require_nonce: bool = True,
        token_max_age: int | None = None,
    ) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        argv = [
            str(Path(sys.executable).with_name("oidc-provider-mock")),
            "--port",
            str(self.port),
            "--require-nonce",
            str(require_nonce).lower(),
        ]
        if token_max_age is not None:
            argv += ["--token-max-age", str(token_max_age)]
        for user in users:
            argv += ["--user-claims", json.dumps(user)]
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"oidc-provider-mock did not start: {log_path.read_text()[-2000:]}")

    def set_user(self, claims: dict[str, Any]) -> None:
        response = requests.put(f"{self.issuer}/users/{claims['sub']}", json=claims, timeout=10)
        response.raise_for_status()

    def stop(self) -> None:
        stop_process(self.process, timeout=10)
        self._log.close()


def login_via_provider(
    hub_url: str, sub: str, timeout: float = 60
) -> tuple[requests.Session, requests.Response]:
    """Log in to a hub as a browser would: follow it to the provider, post the user, come back.

    Returns the session (with the hub's cookies) and the hub's final answer.
    """
    session = requests.Session()
    page = session.get(f"{hub_url}/hub/oauth_login", timeout=timeout)
    action = re.search(r'<form[^>]*action="([^"]*)"', page.text)
    target = urljoin(page.url, action.group(1)) if action and action.group(1) else page.url
    return session, session.post(target, data={"sub": sub, "action": "allow"}, timeout=timeout)
