"""``python -m sovereign_hub.audit.viewer``: the viewer as a hub-managed service.

JupyterHub starts it with its service environment (API token, OAuth client,
URL and prefix). What the viewer reads, and where its own ``audit-viewed``
events go, are traits, set by environment variable or a config file.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from pathlib import Path
from urllib.parse import urlsplit

from tornado.ioloop import IOLoop
from traitlets import Integer, Unicode, default
from traitlets.config import Application

from ..sinks.postgresql import is_postgres_url
from ..trail import AuditTrail
from .app import make_app


class AuditViewer(Application):
    name = "sovereign-audit-viewer"
    description = "Sovereign Hub's audit viewer, a JupyterHub service."

    store = Unicode(
        config=True,
        help="""The audit store to read: a SQLite path or a postgresql:// URL (no password;
        libpq reads PGPASSWORD or PGPASSFILE). Default: $SOVEREIGN_AUDIT_STORE.""",
    )
    hmac_key_file = Unicode(
        config=True,
        help="""File with the chain's HMAC key, for verification on demand. Default:
        $SOVEREIGN_AUDIT_HMAC_KEY_FILE.""",
    )
    spool_dir = Unicode(
        config=True,
        help="""Spool of the viewer's own audit trail (its audit-viewed events). Default:
        $SOVEREIGN_AUDIT_VIEWER_SPOOL.""",
    )
    hub_instance = Unicode(
        "audit-viewer",
        config=True,
        help="Name of the viewer's own chain in the trail (separate from the hub's).",
    )
    password_file = Unicode(
        config=True,
        help="""File with the PostgreSQL password of `store`, if it needs one. Default:
        $SOVEREIGN_AUDIT_STORE_PASSWORD_FILE.""",
    )
    ip = Unicode(
        config=True,
        help="""Address to listen on. Empty (the default): the host of
        $JUPYTERHUB_SERVICE_URL, right when that is a loopback address. In a pod
        the service URL names the hub's Service, whose ClusterIP the pod cannot
        bind: set 0.0.0.0 there. Default: $SOVEREIGN_AUDIT_VIEWER_IP.""",
    )
    port = Integer(
        0, config=True, help="Port to listen on. 0: the port of $JUPYTERHUB_SERVICE_URL."
    )

    @default("store")
    def _store(self) -> str:
        return os.environ.get("SOVEREIGN_AUDIT_STORE", "")

    @default("hmac_key_file")
    def _key_file(self) -> str:
        return os.environ.get("SOVEREIGN_AUDIT_HMAC_KEY_FILE", "")

    @default("password_file")
    def _password_file(self) -> str:
        return os.environ.get("SOVEREIGN_AUDIT_STORE_PASSWORD_FILE", "")

    @default("ip")
    def _ip(self) -> str:
        return os.environ.get("SOVEREIGN_AUDIT_VIEWER_IP", "")

    @default("spool_dir")
    def _spool(self) -> str:
        return os.environ.get("SOVEREIGN_AUDIT_VIEWER_SPOOL", "audit-viewer-spool")

    def start(self) -> None:
        if not self.store:
            raise SystemExit("audit viewer: set SOVEREIGN_AUDIT_STORE (a SQLite path or URL)")
        key = Path(self.hmac_key_file).read_bytes().strip() if self.hmac_key_file else b""
        sink = (
            {
                "type": "postgresql",
                "dsn": self.store,
                "name": "store",
                "password_file": self.password_file,
            }
            if is_postgres_url(self.store)
            else {"type": "sqlite", "path": self.store, "name": "store"}
        )
        trail = AuditTrail(
            spool_dir=self.spool_dir,
            sinks=[sink],
            hub_instance=self.hub_instance,
            hmac_key_file=self.hmac_key_file,
        ).start()
        url = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8890"))
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/audit/")
        app = make_app(
            store=self.store, password_file=self.password_file, trail=trail, key=key, prefix=prefix,
            cookie_secret=secrets.token_bytes(32),
        )  # fmt: skip
        address = self.ip or url.hostname or "127.0.0.1"
        app.listen(self.port or url.port or 8890, address=address)
        self.log.info(
            "audit viewer on %s (for %s%s) reading %s", address, url.netloc, prefix, self.store
        )
        loop = IOLoop.current()

        # JupyterHub stops a managed service with SIGINT, Kubernetes a container with
        # SIGTERM: either is a normal stop (serve no more, deliver the spool), not a crash.
        # Set on the event loop, so a SIGINT a parent process had ignored still counts.
        def on_stop_signals() -> None:
            for stop_signal in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(stop_signal, loop.stop)

        loop.add_callback(on_stop_signals)
        try:
            loop.start()
        finally:
            self.log.info("audit viewer stopping")
            trail.stop()


main = AuditViewer.launch_instance
