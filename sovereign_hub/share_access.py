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
(503), so no share is used unrecorded. Only a share that carries
``access:servers`` is credited: one that only lets its recipient read the
server's status did not let them in.

Expiry holds where a share is used, not only at the reconcile: the authorize
step, and :class:`GovernedSelfAPIHandler` (``/hub/api/user``, where every
single-user server checks a token), first revoke any share of the person past
the policy's maximum, so the reconcile's interval is no longer a grace period.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlparse

from jupyterhub import orm, scopes
from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler
from jupyterhub.apihandlers.users import SelfAPIHandler
from tornado import web

from sovereign_hub import logscrub
from sovereign_hub.reporting import ShareEvent

from .sharing import Governed, GovernedSharing

log = logging.getLogger(__name__)


def carries_access(share: orm.Share) -> bool:
    """Whether ``share`` lets its recipient into the server (``access:servers``), rather
    than, say, only read its status."""
    return any(scope.split("!", 1)[0] == "access:servers" for scope in share.scopes)


def shares_for(spawner: orm.Spawner, user: orm.User) -> list[orm.Share]:
    """The shares of ``spawner`` held by ``user``: made with them first, then with their
    groups (by name)."""
    found = [s for s in user.shared_with_me if s.spawner_id == spawner.id]
    for group in sorted(user.groups, key=lambda g: g.name):
        found += [s for s in group.shared_with_me if s.spawner_id == spawner.id]
    return found


def share_used(spawner: orm.Spawner, user: orm.User) -> orm.Share | None:
    """The share of ``spawner`` that lets ``user`` in: the first of :func:`shares_for` that
    carries ``access:servers``, or None."""
    return next((s for s in shares_for(spawner, user) if carries_access(s)), None)


def _grants_a_code(headers: dict[str, str], status: int) -> bool:
    location = headers.get("Location", "")
    return 300 <= status < 400 and "code" in parse_qs(urlparse(location).query)


class GovernedOAuthAuthorizeHandler(Governed, OAuthAuthorizeHandler):
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
        governor: GovernedSharing = self.governor
        held = shares_for(spawner, user.orm_user)
        if governor.end_expired(self.db, self.users, held):
            # Expiry holds at the door, not only at the next reconcile. The hub decided
            # this sign-in before the share ended: decide again without it.
            still = scopes.get_scopes_for(user.orm_user)
            needed = scopes.access_scopes(client)
            if not scopes._intersect_expanded_scopes(needed, still, db=self.db):
                raise web.HTTPError(
                    403,
                    f"Your share of {spawner.user.name}'s server has ended "
                    f"(the policy's {governor.policy().sharing.max_minutes} minutes).",
                )
        share = share_used(spawner, user.orm_user)
        if share is None:
            return  # let in by a role (an admin), not by a share
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


class GovernedSelfAPIHandler(Governed, SelfAPIHandler):
    """``/hub/api/user``: a share past its end lets no token in, reconciled or not.

    Every single-user server asks the hub who a token belongs to, and what it may
    do, here (``HubAuth.user_for_token``), for a browser's session token and an API
    token alike. A share the policy's maximum has ended is revoked (and recorded)
    before the answer, so its scopes are not in it. The answer says nothing of which
    server asks, so this is not where ``share-accessed`` can be recorded.
    """

    async def get(self) -> None:
        user = self.current_user
        orm_user = getattr(user, "orm_user", None)  # a service has no shares
        held = orm_user.all_shared_with_me if orm_user is not None else []
        if held and self.governor.end_expired(self.db, self.users, held):
            token = self.get_token()
            self.expanded_scopes = scopes.get_scopes_for(token if token is not None else user)
            self.parsed_scopes = scopes.parse_scopes(self.expanded_scopes)
        await super().get()
