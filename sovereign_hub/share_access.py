"""Record each time a share lets someone into another user's server (``share-accessed``).

A recipient reaches a shared server the way its owner does: the single-user
server sends the browser to the hub's OAuth authorize endpoint
(``/hub/api/oauth2/authorize``), and the hub hands back a code only if the
person holds ``access:servers`` on it. That is the one moment the hub sees
"this person is entering this server", once per login to the server (the
server then keeps its own cookie), not once per request: the volume a reviewer
can read, at the point where access is decided.

:class:`GovernedOAuthAuthorizeHandler` keeps JupyterHub's handler and, just
before the code goes back to the browser, records who came in, whose server,
and the share that let them in. Access through a role (an admin's
``access:servers``) is not a share and is not recorded here. Like a grant, the
record comes first: if the trail does not take it, the code is not handed out
(503), so no share is used unrecorded.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlparse

from jupyterhub import orm
from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler
from tornado import web

from sovereign_hub import logscrub
from sovereign_hub.reporting import ShareEvent

from .sharing import SETTING, GovernedSharing

log = logging.getLogger(__name__)


def share_used(db: Any, spawner: orm.Spawner, user: orm.User) -> orm.Share | None:
    """The share of ``spawner`` that lets ``user`` in: made with them, else with one of
    their groups (the first by name), or None."""
    direct = orm.Share.find(db, spawner, user)
    if direct is not None:
        return direct
    for group in sorted(user.groups, key=lambda g: g.name):
        found = orm.Share.find(db, spawner, group)
        if found is not None:
            return found
    return None


def _grants_a_code(headers: dict[str, str], status: int) -> bool:
    location = headers.get("Location", "")
    return 300 <= status < 400 and "code" in parse_qs(urlparse(location).query)


class GovernedOAuthAuthorizeHandler(OAuthAuthorizeHandler):
    """``/hub/api/oauth2/authorize``, recording entry to a server through a share."""

    def send_oauth_response(self, headers: dict[str, str], body: Any, status: int) -> None:
        if _grants_a_code(headers, status):
            self._record_share_access()
        super().send_oauth_response(headers, body, status)

    def _record_share_access(self) -> None:
        client = (
            self.db.query(orm.OAuthClient)
            .filter_by(identifier=self.get_argument("client_id", ""))
            .one_or_none()
        )
        spawner = client.spawner if client is not None else None
        user = self.current_user
        if spawner is None or user is None or spawner.user.id == user.id:
            return  # a service, or the owner's own server
        share = share_used(self.db, spawner, user.orm_user)
        if share is None:
            return  # let in by a role (an admin), not by a share
        governor: GovernedSharing = self.settings[SETTING]
        owner = self._user_from_orm(spawner.user)
        target = share.user or share.group
        event = ShareEvent(
            "share_accessed",
            actor=user.name,
            owner=owner.name,
            server=spawner.name,
            region=GovernedSharing.region_of(owner, spawner.name) or "",
            recipient_kind="group" if share.group is not None else "user",
            recipient=target.name,
        )
        try:
            governor.report(event)
        except Exception as exc:
            where = f"{owner.name}/{spawner.name or '(default)'}"
            what = f"not letting {user.name} into {where}: the audit trail did not record it"
            ref = logscrub.log_incident(log, what, exc)
            raise web.HTTPError(
                503,
                "The shared server was not opened because the audit trail could not "
                f"record it (ref {ref}).",
            ) from None
