"""JupyterHub's share, share-code and accept-share handlers, asking the policy first,
and its per-user and per-group share handlers, recording the shares they end.

Each subclass keeps JupyterHub's route, request body and response, checks the
request with :class:`~sovereign_hub.sharing.GovernedSharing` (its route's
keyword argument, see :class:`~sovereign_hub.sharing.Governed`), reports the
outcome, and calls JupyterHub's own method to do the work.
:func:`sovereign_hub.sharing.install` puts them in JupyterHub's route tables.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler
from jupyterhub.apihandlers.shares import (
    GroupShareAPIHandler,
    ServerShareAPIHandler,
    ServerShareCodeAPIHandler,
    ShareCodeGrantRequest,
    UserShareAPIHandler,
)
from jupyterhub.apihandlers.users import SelfAPIHandler
from jupyterhub.handlers.pages import AcceptShareHandler
from jupyterhub.scopes import needs_scope
from pydantic import ValidationError
from sqlalchemy import event as sa_event
from tornado import web

from sovereign_hub import logscrub
from sovereign_hub.policy.sharing import Recipient
from sovereign_hub.reporting import ShareEvent

from .share_access import GovernedOAuthAuthorizeHandler, GovernedSelfAPIHandler
from .share_ends import choose_end
from .sharing import Governed, GovernedSharing

log = logging.getLogger(__name__)


class _Unrecorded(Exception):
    """The audit trail did not take a grant's record, so the grant must not be committed."""


@contextmanager
def _recorded_before_commit(
    handler: Any, kind: type, record: Callable[[Any], None], ours: Callable[[Any], bool]
) -> Iterator[None]:
    """Run JupyterHub's own grant with its audit record written just before it commits.

    A grant gives access, so it is recorded first and committed second: a record the
    trail refuses (or a trail failing closed) rolls the grant back and the request is
    refused with 503, and a hub that dies after the commit has already written the
    record to the trail's spool. Revocations take the opposite order (committed, then
    recorded: see :meth:`GovernedSharing.reconcile`): taking access away never waits
    for the audit trail, giving it never goes unrecorded. A commit that fails after
    its record leaves a ``share-granted`` for a grant that was not made; the hub's log
    says so (an extra record is the safe side of the two).

    ``ours`` picks this request's rows among those the commit writes (JupyterHub's
    handlers do not yield between the grant and its commit, so no other request's
    rows are in it; the check makes that an assumption that fails safe).
    """
    db = handler.db
    recorded: list[Any] = []

    def before_commit(session: Any) -> None:
        for row in (*session.new, *session.dirty):
            if isinstance(row, kind) and ours(row) and row not in recorded:
                try:
                    record(row)
                except Exception as exc:
                    raise _Unrecorded(str(exc)) from exc
                recorded.append(row)

    sa_event.listen(db, "before_commit", before_commit)
    try:
        yield
    except _Unrecorded as exc:
        db.rollback()
        ref = logscrub.log_incident(log, "share not made: the audit trail did not record it", exc)
        raise web.HTTPError(
            503, f"The share was not made because the audit trail could not record it (ref {ref})."
        ) from None
    except Exception:
        if recorded:
            db.rollback()
            log.exception(
                "share-granted was recorded but the grant was not committed: the record "
                "stands for a share that does not exist"
            )
        raise
    finally:
        sa_event.remove(db, "before_commit", before_commit)


def _share_event(
    handler: Any,
    kind: Any,
    owner: str,
    server: str,
    region: str,
    recipient_kind: str,
    recipient: str,
    **kw: Any,
) -> ShareEvent:
    """The audit record of a share decision, with the requesting user as the actor."""
    actor = handler.current_user.name if handler.current_user else "anonymous"
    return ShareEvent(
        kind,
        actor=actor,
        owner=owner,
        server=server,
        region=region,
        recipient_kind=recipient_kind,
        recipient=recipient,
        **kw,
    )


def _report_revoked(handler: Any, event: ShareEvent) -> None:
    """Record a revocation already committed; a record the trail refuses is logged instead."""
    try:
        _governor(handler).report(event)
    except Exception:
        # The share is gone either way: taking access away never waits for the trail.
        log.exception(
            "revoked %s %s's share of %s/%s but could not record it",
            event.recipient_kind, event.recipient, event.owner, event.server or "(default)",
        )  # fmt: skip


def _governor(handler: Any) -> GovernedSharing:
    governor: GovernedSharing = handler.governor  # set by the route (sharing.install)
    return governor


def _recipient_from_body(handler: Any) -> Recipient | None:
    body = handler.get_json_body() or {}
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("user"), str) and not body.get("group"):
        found = handler.find_user(body["user"])
        if found is None:
            return None  # JupyterHub answers 400 "No such user"
        return GovernedSharing.recipient_of(found.orm_user)
    if isinstance(body.get("group"), str) and not body.get("user"):
        return Recipient("group", body["group"])
    return None


class GovernedShareHandler(Governed, ServerShareAPIHandler):
    """``/hub/api/shares/{owner}/{server}`` with the sharing policy and audit."""

    _wanted_end: datetime | None = None

    def share_model(self, share: orm.Share) -> dict[str, Any]:
        if self._wanted_end is not None:
            # The POST's grant has committed (JupyterHub describes the share it made):
            # keep the end its owner chose before saying when it ends.
            choose_end(self.db, share, self._wanted_end)
            self._wanted_end = None
        model = super().share_model(share)
        model["expires_at"] = _governor(self).ends(self.db, share).isoformat()
        return model

    def get_json_body(self) -> Any:
        # ``expires_in`` is ours: JupyterHub's grant request forbids unknown fields.
        body = super().get_json_body()
        if self.request.method == "POST" and isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "expires_in"}
        return body

    def _expires_in(self) -> float | None:
        """The lifetime the POST asks for, in seconds (None: the policy's maximum)."""
        body = super().get_json_body()
        asked = body.get("expires_in") if isinstance(body, dict) else None
        if asked is None:
            return None
        if (
            isinstance(asked, bool)
            or not isinstance(asked, int | float)
            or not math.isfinite(asked)  # json accepts NaN and Infinity
            or asked < 60
        ):
            raise web.HTTPError(
                400, f"expires_in must be a number of seconds, at least 60; got {asked!r}"
            )
        return float(asked)

    def _event(
        self, kind: Any, owner: str, server: str, region: str, who: Recipient, **kw: Any
    ) -> ShareEvent:
        return _share_event(self, kind, owner, server, region, who.kind, who.name, **kw)

    @needs_scope("shares")
    async def post(self, user_name: str, server_name: str | None = None) -> None:
        recipient = _recipient_from_body(self) if server_name is not None else None
        if recipient is None:
            # Malformed, unknown recipient or no server: JupyterHub's own answer.
            await super().post(user_name, server_name)
            return
        governor = _governor(self)
        owner = self.find_user(user_name)
        if owner is None:
            raise web.HTTPError(404)
        expires_in = self._expires_in()
        region, refused = governor.refusal(owner, server_name, recipient, expires_in=expires_in)
        if refused is not None:
            governor.report(
                self._event(
                    "share_refused",
                    user_name,
                    server_name,
                    region,
                    recipient,
                    reason_code=refused.code,
                    reason=refused.message,
                )
            )
            raise web.HTTPError(403, f"Sharing refused: {refused.message}.")
        target = _share_target(self, recipient)
        spawner = self._lookup_spawner(user_name, server_name, raise_404=False)

        wanted = datetime.now(UTC) + timedelta(seconds=expires_in) if expires_in else None

        def record(share: orm.Share) -> None:
            latest = governor.expires_at(share.created_at)
            expires = min(latest, wanted) if wanted else latest
            governor.report(
                self._event(
                    "share_granted",
                    user_name,
                    server_name,
                    region,
                    recipient,
                    expires_at=expires.isoformat(),
                )
            )

        def ours(share: orm.Share) -> bool:
            return share.spawner is spawner and (share.user is target or share.group is target)

        self._wanted_end = wanted
        with _recorded_before_commit(self, orm.Share, record, ours):
            await super().post(user_name, server_name)

    @needs_scope("shares")
    async def patch(self, user_name: str, server_name: str | None = None) -> None:
        recipient = _recipient_from_body(self) if server_name is not None else None
        existed = recipient is not None and self._share_of(user_name, server_name, recipient)
        await super().patch(user_name, server_name)
        # Only a share that is gone is revoked: a PATCH that takes away some of its scopes,
        # or names a share that never was, revokes nothing.
        if (
            recipient is not None
            and existed
            and not self._share_of(user_name, server_name, recipient)
        ):
            owner = self.find_user(user_name)
            region = GovernedSharing.region_of(owner, server_name) or ""
            _report_revoked(
                self,
                self._event(
                    "share_revoked",
                    user_name,
                    server_name,
                    region,
                    recipient,
                    reason_code="revoked",
                ),
            )

    def _share_of(self, user_name: str, server_name: str | None, recipient: Recipient) -> bool:
        self.db.expire_all()  # JupyterHub's handler changed the rows: read them again
        try:
            spawner = self._lookup_spawner(user_name, server_name)
        except web.HTTPError:
            return False  # no such server: JupyterHub answers for it
        target = _share_target(self, recipient)
        return target is not None and orm.Share.find(self.db, spawner, target) is not None

    @needs_scope("shares")
    async def delete(self, user_name: str, server_name: str | None = None) -> None:
        revoked: list[Recipient] = []
        if server_name is not None:
            spawner = self._lookup_spawner(user_name, server_name)
            revoked = [GovernedSharing.recipient_of(s.user or s.group) for s in spawner.shares]
        await super().delete(user_name, server_name)
        owner = self.find_user(user_name)
        region = (GovernedSharing.region_of(owner, server_name or "") if owner else None) or ""
        for recipient in revoked:
            _report_revoked(
                self,
                self._event(
                    "share_revoked",
                    user_name,
                    server_name,
                    region,
                    recipient,
                    reason_code="revoked",
                ),
            )


def _utc_iso(moment: Any) -> str:
    # JupyterHub stores naive UTC datetimes.
    return moment.replace(tzinfo=UTC).isoformat() if moment.tzinfo is None else moment.isoformat()


def _share_target(handler: Any, recipient: Recipient) -> Any:
    if recipient.kind == "group":
        return orm.Group.find(handler.db, name=recipient.name)
    return orm.User.find(handler.db, name=recipient.name)


class _RecipientShareRevoke:
    """A share deleted from the recipient's side: ``/hub/api/users/{user}/shared/{owner}/{server}``
    (a recipient leaving a share, or an admin) or ``/hub/api/groups/{group}/shared/…``.

    JupyterHub's ``delete`` is kept; the revocation is recorded after it commits, with
    the requester as the actor (the recipient itself when they leave).
    """

    kind: str

    def delete(self, name: str, owner_name: str, server_name: str) -> None:
        handler: Any = self
        handler._lookup_share(name, owner_name, server_name)  # JupyterHub's 404, before anything
        owner = handler.find_user(owner_name)
        region = (GovernedSharing.region_of(owner, server_name) if owner else None) or ""
        # JupyterHub's handler, after this mixin in the MRO (untyped).
        super().delete(name, owner_name, server_name)  # type: ignore[misc]
        # JupyterHub's delete has committed (it raises when there is nothing to delete).
        _report_revoked(
            handler,
            _share_event(
                handler,
                "share_revoked",
                owner_name,
                server_name,
                region,
                self.kind,
                name,
                reason_code="revoked",
            ),
        )


class GovernedUserShareHandler(Governed, _RecipientShareRevoke, UserShareAPIHandler):
    """``/hub/api/users/{user}/shared/{owner}/{server}``: leaving a share is recorded."""

    kind = "user"

    @needs_scope("users:shares")
    def delete(self, user_name: str, owner_name: str, _server_name: str) -> None:
        # needs_scope reads the parameter names: they are JupyterHub's, exactly.
        _RecipientShareRevoke.delete(self, user_name, owner_name, _server_name)


class GovernedGroupShareHandler(Governed, _RecipientShareRevoke, GroupShareAPIHandler):
    """``/hub/api/groups/{group}/shared/{owner}/{server}``: removing a group's share is recorded."""

    kind = "group"

    @needs_scope("groups:shares")
    def delete(self, group_name: str, owner_name: str, _server_name: str) -> None:
        # needs_scope reads the parameter names: they are JupyterHub's, exactly.
        _RecipientShareRevoke.delete(self, group_name, owner_name, _server_name)


class GovernedShareCodeHandler(Governed, ServerShareCodeAPIHandler):
    """``/hub/api/share-codes/{owner}/{server}``: codes only from those who may share,
    and never longer than the policy's maximum."""

    @needs_scope("shares")
    async def post(self, user_name: str, server_name: str | None = None) -> None:
        if server_name is None:
            await super().post(user_name, server_name)
            return
        governor = _governor(self)
        owner = self.find_user(user_name)
        if owner is None:
            raise web.HTTPError(404)
        body = self.get_json_body() or {}
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        longest = governor.policy().sharing.max_minutes * 60
        try:
            # JupyterHub's own model coerces ("31536000", 31536000.0): the cap must see the
            # number JupyterHub will use, not the JSON value as sent.
            asked = ShareCodeGrantRequest(
                **{**body, "expires_in": body.get("expires_in", min(86400, longest))}
            ).expires_in
        except (ValidationError, TypeError) as exc:
            raise web.HTTPError(400, f"Invalid share code request: {exc}") from None
        region, refused = governor.refusal(owner, server_name, None, expires_in=asked)
        if refused is not None:
            governor.report(
                _share_event(
                    self,
                    "share_refused",
                    user_name,
                    server_name,
                    region,
                    "code",
                    "",
                    reason_code=refused.code,
                    reason=refused.message,
                )
            )
            raise web.HTTPError(403, f"Sharing refused: {refused.message}.")
        self._body = {**body, "expires_in": asked}

        def record(code: orm.ShareCode) -> None:
            governor.report(
                _share_event(
                    self,
                    "share_granted",
                    user_name,
                    server_name,
                    region,
                    "code",
                    "",
                    expires_at=_utc_iso(code.expires_at),
                )
            )

        spawner = self._lookup_spawner(user_name, server_name, raise_404=False)

        def ours(code: orm.ShareCode) -> bool:
            return code.spawner is spawner

        with _recorded_before_commit(self, orm.ShareCode, record, ours):
            await super().post(user_name, server_name)

    def get_json_body(self) -> Any:
        # The capped expiry replaces the caller's default (one day) before
        # JupyterHub validates the body.
        return getattr(self, "_body", None) or super().get_json_body()


class GovernedAcceptShareHandler(Governed, AcceptShareHandler):
    """``/hub/accept-share``: a code is exchanged only by a recipient the policy allows."""

    @web.authenticated
    def post(self) -> None:
        share_code = orm.ShareCode.find(self.db, code=self.get_argument("code"))
        if share_code is not None and share_code.owner != self.current_user.orm_user:
            governor = _governor(self)
            owner = self._user_from_orm(share_code.owner)
            recipient = GovernedSharing.recipient_of(self.current_user.orm_user)
            server = share_code.spawner.name
            region, refused = governor.refusal(owner, server, recipient)
            who = (owner.name, server, region, "user", recipient.name)
            if refused is not None:
                governor.report(
                    _share_event(
                        self,
                        "share_refused",
                        *who,
                        reason_code=refused.code,
                        reason=refused.message,
                    )
                )
                raise web.HTTPError(403, f"Sharing refused: {refused.message}.")
            user = self.current_user.orm_user

            def record(share: orm.Share) -> None:
                expires = governor.expires_at(share.created_at).isoformat()
                governor.report(_share_event(self, "share_granted", *who, expires_at=expires))

            def ours(share: orm.Share) -> bool:
                return share.spawner is share_code.spawner and share.user is user

            with _recorded_before_commit(self, orm.Share, record, ours):
                super().post()
            return
        super().post()


SWAPS = {
    ServerShareAPIHandler: GovernedShareHandler,
    ServerShareCodeAPIHandler: GovernedShareCodeHandler,
    AcceptShareHandler: GovernedAcceptShareHandler,
    UserShareAPIHandler: GovernedUserShareHandler,
    GroupShareAPIHandler: GovernedGroupShareHandler,
    OAuthAuthorizeHandler: GovernedOAuthAuthorizeHandler,
    SelfAPIHandler: GovernedSelfAPIHandler,
}
"""JupyterHub's handler class → ours, at the same route."""
