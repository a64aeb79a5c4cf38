"""Governed sharing: JupyterHub's own sharing API, checked against the policy in the hub.

JupyterHub 5 lets a server's owner grant access to users or groups
(``/hub/api/shares/{owner}/{server}``) or issue share codes
(``/hub/api/share-codes/{owner}/{server}``, exchanged at ``/hub/accept-share``).
:func:`install` keeps those routes, request bodies and responses, and swaps
in subclasses of JupyterHub's handlers that first ask the pure
:func:`~sovereign_hub.policy.sharing.share_refusal`: a refused share is a 403
whose message names the rule (for residency, the region), and every grant,
refusal and revocation is reported to the audit trail.

JupyterHub registers its default handlers before any ``extra_handlers``, and
Tornado takes the first route that matches, so an added route could never
take precedence; replacing the class in JupyterHub's own route table, before
the app builds its Tornado application, is the one place a config file can
enforce this server-side.

Shares do not expire in JupyterHub. :class:`GovernedSharing` reconciles every
share every ``reconcile_interval`` seconds: one past the policy's
``sharing.maxMinutes`` since it was created, or one the policy no longer
allows (a policy change, the recipient left a group, the server stopped
running in that region), is revoked and the revocation audited.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers.shares import ServerShareAPIHandler, ServerShareCodeAPIHandler
from jupyterhub.handlers.pages import AcceptShareHandler
from jupyterhub.scopes import needs_scope
from tornado import web
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Float, Instance, Unicode
from traitlets.config import Config, Configurable

from sovereign_hub.policy import Policy, PolicyError, cached_policy
from sovereign_hub.policy.sharing import Recipient, ShareRefusal, share_expires, share_refusal
from sovereign_hub.reporting import Reporter, ShareEvent

log = logging.getLogger(__name__)
SETTING = "sovereign_sharing"
"""The Tornado setting that holds this hub's :class:`GovernedSharing`."""


def _utc(moment: datetime) -> datetime:
    # JupyterHub stores naive UTC datetimes.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class GovernedSharing(Configurable):
    """The sharing policy applied to JupyterHub's shares: checks, audit and reconcile."""

    policy_file = Unicode(
        "",
        config=True,
        help="""Path of the policy document whose ``sharing`` section governs shares.
        Empty (the default) means ``c.SovereignSpawner.policy_file``.""",
    )
    reconcile_interval = Float(
        60.0,
        config=True,
        help="""Seconds between checks of every share against the policy and its
        maximum duration (default 60). A share outlives its expiry, a policy change or
        its recipient's loss of a group by at most this long (plus the single-user
        server's token cache, ``HubAuth.cache_max_age``, for sessions already open).
        0 turns the reconcile off: shares then never expire.""",
    )
    reporter = Instance(
        Reporter,
        allow_none=True,
        config=True,
        help="""Where grants, refusals and revocations go; the audit trail's reporter
        (``hub_reporter(c)``). None (the default) writes them to the hub's log.""",
    )

    def policy(self) -> Policy:
        path = self.policy_file or self.config.SovereignSpawner.get("policy_file", "")
        return cached_policy(path).policy

    def report(self, event: ShareEvent) -> None:
        (self.reporter or Reporter()).share(event)

    def __deepcopy__(self, memo: dict[int, Any]) -> GovernedSharing:
        return self  # one per hub, held in Tornado settings that config copies

    # -- the checks -------------------------------------------------------------
    @staticmethod
    def region_of(owner: Any, server_name: str) -> str | None:
        """The region the owner's server runs in, or None when it is not running."""
        spawner = owner.spawners.get(server_name) if server_name in owner.spawners else None
        allocation = getattr(spawner, "allocation", None)
        if spawner is None or not spawner.active or allocation is None:
            return None
        return str(allocation.region)

    @staticmethod
    def recipient_of(share_with: orm.User | orm.Group) -> Recipient:
        if isinstance(share_with, orm.Group):
            return Recipient("group", share_with.name)
        return Recipient("user", share_with.name, tuple(g.name for g in share_with.groups))

    def refusal(
        self, owner: Any, server_name: str, recipient: Recipient | None
    ) -> tuple[str, ShareRefusal | None]:
        """(region, refusal) for sharing this server; ``recipient`` None checks the owner only."""
        region = self.region_of(owner, server_name)
        if region is None:
            return "", ShareRefusal(
                "not_permitted", "only a running server can be shared; start it first"
            )
        policy = self.policy()
        owner_groups = tuple(g.name for g in owner.groups)
        if recipient is None:
            # A share code has no recipient until it is exchanged: check the owner's
            # right to share with anyone (a rule naming no one refuses everyone).
            recipient = Recipient("user", "\0anyone")
            found = share_refusal(
                policy, owner_groups=owner_groups, region=region, recipient=recipient
            )
            return region, found if found and found.code == "not_permitted" else None
        return region, share_refusal(
            policy, owner_groups=owner_groups, region=region, recipient=recipient
        )

    def expires_at(self, created: datetime) -> datetime:
        return share_expires(self.policy(), _utc(created))

    # -- the reconcile ----------------------------------------------------------
    def reconcile(self, db: Any, users: Any) -> int:
        """Revoke every share that expired or that the policy no longer allows; return how many."""
        try:
            policy = self.policy()
        except PolicyError as exc:
            # Keep shares as they are rather than revoke all on a typo; the hub logs why.
            log.error("sharing reconcile skipped: %s", exc)
            return 0
        now = datetime.now(UTC)
        revoked = 0
        for share in db.query(orm.Share).all():
            owner = users[share.owner]
            recipient = self.recipient_of(share.user or share.group)
            region, refused = self.refusal(owner, share.spawner.name, recipient)
            if not region:
                # A stopped server (or one the hub is still restoring) keeps its
                # shares, as in JupyterHub: only the expiry applies to it.
                refused = None
            if share_expires(policy, _utc(share.created_at)) <= now:
                code, reason = "expired", f"the policy's {policy.sharing.max_minutes} minutes ended"
            elif refused is not None:
                code, reason = refused.code, refused.message
            else:
                continue
            self.report(
                ShareEvent(
                    "share_revoked",
                    actor="system",
                    owner=owner.name,
                    server=share.spawner.name,
                    region=region,
                    recipient_kind=recipient.kind,
                    recipient=recipient.name,
                    reason_code=code,
                    reason=reason,
                )
            )
            db.delete(share)
            revoked += 1
        if revoked:
            db.commit()
            log.info("sharing reconcile revoked %d share(s)", revoked)
        return revoked

    def start(self, app_instance: Any) -> None:
        """Reconcile every ``reconcile_interval`` seconds in the hub's event loop."""
        # Called once the whole config file has run: take the settings made after install().
        self.update_config(self.config)
        if self.reconcile_interval <= 0:
            app_instance().log.warning("sharing reconcile is off: shares never expire")
            return

        def tick() -> None:
            app = app_instance()
            if getattr(app, "db", None) is None or getattr(app, "users", None) is None:
                return  # the hub is still starting
            try:
                self.reconcile(app.db, app.users)
            except Exception:
                log.exception("sharing reconcile failed")
                app.db.rollback()

        PeriodicCallback(tick, self.reconcile_interval * 1000).start()
        app_instance().log.info("sharing reconcile every %ss", self.reconcile_interval)


def _governor(handler: web.RequestHandler) -> GovernedSharing:
    return handler.settings[SETTING]


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


class GovernedShareHandler(ServerShareAPIHandler):
    """``/hub/api/shares/{owner}/{server}`` with the sharing policy and audit."""

    def share_model(self, share: orm.Share) -> dict[str, Any]:
        model = super().share_model(share)
        model["expires_at"] = _governor(self).expires_at(share.created_at).isoformat()
        return model

    def _event(
        self, kind: Any, owner: str, server: str, region: str, who: Recipient, **kw: Any
    ) -> ShareEvent:
        actor = self.current_user.name if self.current_user else "anonymous"
        return ShareEvent(
            kind,
            actor=actor,
            owner=owner,
            server=server,
            region=region,
            recipient_kind=who.kind,
            recipient=who.name,
            **kw,
        )

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
        region, refused = governor.refusal(owner, server_name, recipient)
        if refused is not None:
            governor.report(
                self._event(
                    "share_refused",
                    user_name,
                    server_name,
                    region,
                    recipient,
                    reason_code=refused.code if region else "not_running",
                    reason=refused.message,
                )
            )
            raise web.HTTPError(403, f"Sharing refused: {refused.message}.")
        await super().post(user_name, server_name)
        share = orm.Share.find(
            self.db, self._lookup_spawner(user_name, server_name), _share_target(self, recipient)
        )
        expires = governor.expires_at(share.created_at).isoformat() if share else ""
        governor.report(
            self._event(
                "share_granted", user_name, server_name, region, recipient, expires_at=expires
            )
        )

    @needs_scope("shares")
    async def patch(self, user_name: str, server_name: str | None = None) -> None:
        recipient = _recipient_from_body(self) if server_name is not None else None
        await super().patch(user_name, server_name)
        if recipient is not None:
            owner = self.find_user(user_name)
            region = GovernedSharing.region_of(owner, server_name) or ""
            _governor(self).report(
                self._event(
                    "share_revoked",
                    user_name,
                    server_name,
                    region,
                    recipient,
                    reason_code="revoked",
                )
            )

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
            _governor(self).report(
                self._event(
                    "share_revoked",
                    user_name,
                    server_name,
                    region,
                    recipient,
                    reason_code="revoked",
                )
            )


def _share_target(handler: Any, recipient: Recipient) -> Any:
    if recipient.kind == "group":
        return orm.Group.find(handler.db, name=recipient.name)
    return orm.User.find(handler.db, name=recipient.name)


class GovernedShareCodeHandler(ServerShareCodeAPIHandler):
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
        region, refused = governor.refusal(owner, server_name, None)
        asked = body.get("expires_in", min(86400, longest))
        if refused is None and isinstance(asked, int) and asked > longest:
            refused = ShareRefusal(
                "not_permitted",
                f"expires_in {asked} is longer than the policy allows ({longest} seconds)",
            )
            code = "too_long"
        else:
            code = (refused.code if region else "not_running") if refused else ""
        if refused is not None:
            governor.report(
                ShareEvent(
                    "share_refused",
                    actor=self.current_user.name,
                    owner=user_name,
                    server=server_name,
                    region=region,
                    recipient_kind="code",
                    reason_code=code,
                    reason=refused.message,
                )
            )
            raise web.HTTPError(403, f"Sharing refused: {refused.message}.")
        self._body = {**body, "expires_in": asked}
        await super().post(user_name, server_name)
        governor.report(
            ShareEvent(
                "share_granted",
                actor=self.current_user.name,
                owner=user_name,
                server=server_name,
                region=region,
                recipient_kind="code",
                expires_at=datetime.fromtimestamp(
                    datetime.now(UTC).timestamp() + asked, UTC
                ).isoformat(),
            )
        )

    def get_json_body(self) -> Any:
        # The capped expiry replaces the caller's default (one day) before
        # JupyterHub validates the body.
        return getattr(self, "_body", None) or super().get_json_body()


class GovernedAcceptShareHandler(AcceptShareHandler):
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
            event = {
                "actor": self.current_user.name,
                "owner": owner.name,
                "server": server,
                "region": region,
                "recipient_kind": "user",
                "recipient": recipient.name,
            }
            if refused is not None:
                governor.report(
                    ShareEvent(
                        "share_refused",
                        **event,
                        reason_code=refused.code if region else "not_running",
                        reason=refused.message,
                    )
                )
                raise web.HTTPError(403, f"Sharing refused: {refused.message}.")
            super().post()
            share = orm.Share.find(self.db, share_code.spawner, self.current_user.orm_user)
            expires = governor.expires_at(share.created_at).isoformat() if share else ""
            governor.report(ShareEvent("share_granted", **event, expires_at=expires))
            return
        super().post()


_SWAPS = {
    ServerShareAPIHandler: GovernedShareHandler,
    ServerShareCodeAPIHandler: GovernedShareCodeHandler,
    AcceptShareHandler: GovernedAcceptShareHandler,
}


def install(c: Config) -> GovernedSharing:
    """Govern this hub's sharing API by the policy; call from ``jupyterhub_config.py``.

    Swaps the handler classes in JupyterHub's route tables (the hub builds its
    Tornado application from them after reading its config), puts the
    :class:`GovernedSharing` in the Tornado settings, and starts the reconcile.
    """
    from jupyterhub import apihandlers, handlers
    from jupyterhub.app import JupyterHub

    for table in (apihandlers.default_handlers, handlers.default_handlers):
        for i, route in enumerate(table):
            if route[1] in _SWAPS:
                table[i] = (route[0], _SWAPS[route[1]], *route[2:])
    governor = GovernedSharing(config=c)
    settings = dict(c.JupyterHub.get("tornado_settings", {}))
    settings[SETTING] = governor
    c.JupyterHub.tornado_settings = settings
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        # Not inside a starting hub (JupyterHub reads its config in its event loop).
        log.warning("sharing.install outside the hub's event loop: no reconcile started")
    else:
        IOLoop.current().add_callback(governor.start, JupyterHub.instance)
    return governor
