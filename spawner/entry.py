"""A region's entry point for browsers: the server's URLs on the region's own host.

When a region's gateway has a ``publicUrl`` (``cluster.gateway.publicUrl``),
browsers reach that region's servers at the gateway's entry point, so the
notebook session never crosses to the hub's region. JupyterHub authenticates
a browser to a server with OAuth, and three of its URLs must then name the
regional host:

- the OAuth client's ``redirect_uri``, which the hub registers for the server
  as a path (``/user/<name>/oauth_callback``, on the hub's host) and compares
  exactly with the one the server sends; it becomes
  ``<publicUrl>/user/<name>/oauth_callback``, so the server's cookie is set on
  the regional host (cookies are host-scoped) and the session continues there;
- the server's ``JUPYTERHUB_OAUTH_CALLBACK_URL`` (the same URL) and
  ``JUPYTERHUB_PUBLIC_URL`` (``Spawner.public_url``);
- ``JUPYTERHUB_HOST``, the hub's own origin, so the server sends a browser to
  the hub's host to log in, log out and authorize, not to a path of the
  regional host, where no hub is.

So the hub's public URL must be known (``JupyterHub.public_url``); a spawn in
such a region without it is refused with a message saying so. The hub's own
pages keep linking ``/user/<name>/`` on the hub's host: the gateway redirects a
browser's visit there to its entry point (:mod:`sovereign_hub.gateway.proxy`).
Everything is recomputed on each spawn, so a region that loses its
``publicUrl`` serves its next server through the hub's proxy again.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import object_session
from traitlets.config import Configurable

from sovereign_hub.policy import Cluster
from sovereign_hub.refusals import SpawnRefused

CALLBACK = "JUPYTERHUB_OAUTH_CALLBACK_URL"


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def on_host(host: str, path: str) -> str:
    """``path`` (an absolute path, as JupyterHub writes it without subdomains) on ``host``."""
    if not path.startswith("/"):
        raise ValueError(f"{path!r} is not a path on the hub's host")
    return host.rstrip("/") + path


def entry_env(env: dict[str, str], public_url: str, hub_origin: str) -> dict[str, str]:
    """The server's environment ``env`` (JupyterHub's, with paths on the hub's host) for a
    server reached at ``public_url``, the hub being at ``hub_origin``."""
    changed = dict(env)
    changed[CALLBACK] = on_host(public_url, env[CALLBACK])
    changed["JUPYTERHUB_PUBLIC_URL"] = on_host(public_url, env["JUPYTERHUB_SERVICE_PREFIX"])
    changed["JUPYTERHUB_HOST"] = hub_origin
    return changed


class RegionalEntry(Configurable):
    """Mixin for :class:`RegionalClusters`' spawner: a server of a region with an entry
    point is given its URLs there (see the module's docstring)."""

    _cluster: Cluster | None
    public_url: str
    public_hub_url: str
    orm_spawner: Any
    user: Any
    name: str
    log: Any

    _jupyterhub_public_url: str | None = None
    """JupyterHub's own ``public_url`` for this server, while an entry point's replaces it."""

    def entry_point(self) -> str | None:
        """The regional entry point of this server's cluster, or None."""
        gateway = self._cluster.gateway if self._cluster else None
        return gateway.public_url if gateway else None

    def _hub_origin(self, entry: str) -> str:
        if not self.public_hub_url:
            raise SpawnRefused(
                500,
                f"This region serves notebooks at its own entry point ({entry}), which needs "
                "the hub's public URL to send browsers back to the hub for login: ask your "
                "administrator to set JupyterHub.public_url.",
            )
        return origin(self.public_hub_url)

    async def get_pod_manifest(self) -> Any:
        entry = self.entry_point()
        if entry is not None:
            self._hub_origin(entry)  # refuse before the pod is made, not after
            if self._jupyterhub_public_url is None:
                self._jupyterhub_public_url = self.public_url
            self.public_url = on_host(entry, self.user.server_url(self.name))
            client = getattr(self.orm_spawner, "oauth_client", None)
            if client is not None and client.redirect_uri.startswith("/"):
                # JupyterHub compares it exactly with the server's: both on the regional host.
                client.redirect_uri = on_host(entry, client.redirect_uri)
                if (session := object_session(client)) is not None:
                    session.commit()  # JupyterHub's rule: commit before the next await
            self.log.info("%s's server is served at %s", self.user.name, self.public_url)
        elif self._jupyterhub_public_url is not None:  # an earlier spawn's entry point
            self.public_url, self._jupyterhub_public_url = self._jupyterhub_public_url, None
        # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
        return await super().get_pod_manifest()  # type: ignore[misc]

    def get_env(self) -> dict[str, str]:
        # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
        env: dict[str, str] = super().get_env()  # type: ignore[misc]
        entry = self.entry_point()
        if entry is None:
            return env
        return entry_env(env, entry, self._hub_origin(entry))
