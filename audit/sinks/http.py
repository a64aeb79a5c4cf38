"""What the HTTP sinks share: one session, TLS settings, credentials from files or environment.

The client is ``requests`` (already installed with JupyterHub): connection
pooling, proxies from the environment and certificate checking, with
nothing of ours to maintain.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from .base import Sink, SinkConfigError


class HttpError(RuntimeError):
    """A store answered with an error; the shipper keeps the batch and retries."""


def secret(sink: str, option: str, file: str, env: str) -> str:
    """A credential from a file (a mounted Secret) or an environment variable."""
    if file:
        path = Path(file)
        if not path.is_file():
            raise SinkConfigError(f"audit sink {sink}: {option}_file: {file} is not a file")
        return path.read_text().strip()
    if env:
        if env not in os.environ:
            raise SinkConfigError(f"audit sink {sink}: {option}_env: ${env} is not set")
        return os.environ[env]
    return ""


class HttpSink(Sink):
    """An HTTP(S) store. ``token_file``/``token_env`` give a bearer token; the
    ``username`` with ``password_file``/``password_env`` give basic auth."""

    option_help: ClassVar[dict[str, str]] = {
        "url": "The store's base URL, `http://` or `https://`.",
        "token_file": "A file holding a bearer token (a mounted Secret).",
        "token_env": "An environment variable holding a bearer token.",
        "username": "User name for basic auth, with `password_file` or `password_env`.",
        "password_file": "A file holding the basic-auth password.",
        "password_env": "An environment variable holding the basic-auth password.",
        "ca_file": "CA bundle the server's certificate is checked against (default: the system's).",
        "headers": "Extra headers on every request; never `Authorization` or `Cookie`.",
        "timeout": "Seconds to wait for each request (default 10).",
    }

    def __init__(
        self,
        url: str,
        token_file: str = "",
        token_env: str = "",
        username: str = "",
        password_file: str = "",
        password_env: str = "",
        ca_file: str = "",
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        # The URL is never quoted: a misplaced credential in it would reach the log.
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            scheme = f"its scheme is {parts.scheme!r}" if parts.scheme else "it has no scheme"
            raise SinkConfigError(f"audit sink {self.name}: url: not an http(s) URL ({scheme})")
        if parts.password is not None:
            raise SinkConfigError(
                f"audit sink {self.name}: url: must not contain a password (user:password@); "
                "use username with password_file or password_env"
            )
        for header in headers or {}:
            if header.lower() in ("authorization", "cookie"):
                raise SinkConfigError(
                    f"audit sink {self.name}: headers: {header} must not be set in "
                    "configuration; use token_file or password_file"
                )
        self.url = url.rstrip("/")
        self.token = secret(self.name, "token", token_file, token_env)
        password = secret(self.name, "password", password_file, password_env)
        self.auth = (username, password) if username else None
        self.verify: str | bool = ca_file or True
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._session: Any = None

    def open(self) -> None:
        import requests

        self.close()
        session = requests.Session()
        session.headers.update(self.headers)
        session.headers["User-Agent"] = "sovereign-hub-audit"
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        session.auth = self.auth
        session.verify = self.verify
        self._session = session

    def post(self, path: str, body: bytes, content_type: str, **headers: str) -> Any:
        if self._session is None:
            self.open()
        response = self._session.post(
            self.url + path,
            data=body,
            headers={"Content-Type": content_type, **headers},
            timeout=self.timeout,
        )
        if response.status_code >= 300:
            # The body may echo what was sent; the status line is enough to act on.
            raise HttpError(f"{self.name}: {path or '/'} answered HTTP {response.status_code}")
        return response

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
