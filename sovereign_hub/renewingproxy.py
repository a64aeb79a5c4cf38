"""configurable-http-proxy started by the hub, restarted when its gateway client
certificate is renewed.

configurable-http-proxy reads ``--client-ssl-key``, ``--client-ssl-cert`` and
``--client-ssl-ca`` once, at start, and has no signal to read them again. So
when the files change (cert-manager renewing the Secret, a Secret volume's
swap), :class:`RenewingProxy` stops the proxy and starts it again, with the
routes the hub knows, as JupyterHub does when the proxy has died: its
periodic ``check_running`` is where both happen. Open connections through the
proxy (users' WebSockets, to every server, not only the gateways') are cut
once; JupyterLab reconnects them. A proxy the hub does not start (the chart's
proxy Deployment) needs a rollout instead.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jupyterhub.proxy import ConfigurableHTTPProxy
from traitlets import List, Unicode


def _stats(paths: list[str]) -> tuple[tuple[int, int, int], ...] | None:
    """Each file's (inode, mtime, size); None while one is missing (a swap half-way)."""
    try:
        infos = [os.stat(path) for path in paths]
    except OSError:
        return None
    return tuple((i.st_ino, i.st_mtime_ns, i.st_size) for i in infos)


class RenewingProxy(ConfigurableHTTPProxy):
    """configurable-http-proxy, restarted when its client certificate files change."""

    client_files = List(
        Unicode(),
        config=True,
        help="""Files the proxy reads at start and cannot read again: its gateway client
        certificate, key and CA bundle (`sovereign_hub.gateway.hub.configure_hub` sets them).
        Checked every `check_running_interval` seconds (5 by default); when one changed, the
        proxy is restarted with the hub's routes. Empty (the default): never restarted for
        this.""",
    )

    _seen: Any = None

    async def start(self) -> None:
        self._seen = _stats(self.client_files)
        await super().start()

    async def check_running(self) -> None:
        now = _stats(self.client_files)
        if self.client_files and now is not None and now != self._seen:
            self.log.warning("the proxy's gateway client certificate changed: restarting it")
            self.stop()
            await asyncio.to_thread(self.proxy_process.wait, 30)
            await self.start()
            await self.restore_routes()
            return
        await super().check_running()
