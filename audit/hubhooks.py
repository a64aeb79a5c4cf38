"""What the trail takes from JupyterHub itself: REST API actions and its ``server-action`` events.

Both attach through configuration, with no change to JupyterHub:

- every finished request passes through Tornado's ``log_function``, which
  JupyterHub lets ``c.JupyterHub.tornado_settings`` replace; ours calls
  JupyterHub's own ``log_request`` first, then records state-changing API
  requests as ``api-action`` events;
- JupyterHub emits ``server-action`` through ``jupyter_events``, whose
  ``c.EventLogger.handlers`` receive every event it emits; ours copies them
  into the chain as ``hub-server-action``.

Nothing of the request beyond its method, path and status is kept: no body,
no query string (tokens can travel there), no header, and the token in the
legacy ``/authorizations/token/<token>`` routes is replaced by ``{token}``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from . import schemas
from .trail import AuditTrail

log = logging.getLogger(__name__)

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HUB_SERVER_ACTION = "https://schema.jupyter.org/jupyterhub/events/server-action"
_SECRET_IN_PATH = re.compile(r"(/authorizations/(?:token|cookie)/)[^/]+.*$")
_TARGET = re.compile(r"/api/(users|groups)/([^/]+)")


def api_action(method: str, path: str, status: int, actor: str) -> dict[str, Any] | None:
    """The ``api-action`` event for one finished request, or None when it is not one."""
    if method not in STATE_CHANGING or "/api/" not in path:
        return None
    route = _SECRET_IN_PATH.sub(r"\1{token}", path)[:512]
    data: dict[str, Any] = {
        "actor": actor[:256],
        "subject": actor[:256],
        "method": method,
        "route": route,
        "status": status,
    }
    target = _TARGET.search(route)
    if target:
        kind, name = target.group(1), unquote(target.group(2))[:256]
        data["target_user" if kind == "users" else "target_group"] = name
        if kind == "users":
            data["subject"] = name
    return data


def _actor(handler: Any) -> str:
    # After prepare(), JupyterHub's handlers hold the resolved user or service
    # here; reading it never triggers authentication again.
    who = getattr(handler, "_jupyterhub_user", None)
    return str(getattr(who, "name", None) or "anonymous")


def request_logger(trail: AuditTrail, inner: Callable[[Any], None]) -> Callable[[Any], None]:
    """A Tornado ``log_function``: JupyterHub's logging, then the ``api-action`` event."""

    def log_function(handler: Any) -> None:
        inner(handler)
        request = handler.request
        event = api_action(request.method, request.path, handler.get_status(), _actor(handler))
        if event is None:
            return
        try:
            trail.emit(schemas.API_ACTION, event)
        except Exception:
            # The response is already sent: a failure here can only be logged.
            log.exception("could not record an API action in the audit trail")

    return log_function


class ServerActionHandler(logging.Handler):
    """A ``jupyter_events`` handler that copies JupyterHub's ``server-action`` into the chain."""

    def __init__(self, trail: AuditTrail) -> None:
        super().__init__()
        self.trail = trail

    def emit(self, record: logging.LogRecord) -> None:
        capsule = record.msg
        if not isinstance(capsule, dict) or capsule.get("__schema__") != HUB_SERVER_ACTION:
            return
        try:
            self.trail.emit(
                schemas.HUB_SERVER_ACTION,
                {
                    "actor": "system",
                    "subject": str(capsule.get("username", ""))[:256],
                    "action": capsule.get("action"),
                    "server": str(capsule.get("servername", ""))[:256],
                },
            )
        except Exception:
            log.exception("could not record JupyterHub's server-action in the audit trail")

    def __deepcopy__(self, memo: dict[int, Any]) -> ServerActionHandler:
        return self  # one handler per trail, shared through config copies


def install(config: Any, trail: AuditTrail) -> None:
    """Attach the trail to the hub's request log and event log in ``config`` (``c``)."""
    from jupyterhub.log import log_request

    settings = dict(config.JupyterHub.get("tornado_settings", {}))
    inner = settings.get("log_function", log_request)
    settings["log_function"] = request_logger(trail, inner)
    config.JupyterHub.tornado_settings = settings
    handlers = list(config.EventLogger.get("handlers", []))
    handlers.append(ServerActionHandler(trail))
    config.EventLogger.handlers = handlers
