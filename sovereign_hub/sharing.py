"""Governed sharing: JupyterHub's own sharing API, checked against the policy in the hub.

JupyterHub 5 lets a server's owner grant access to users or groups
(``/hub/api/shares/{owner}/{server}``) or issue share codes
(``/hub/api/share-codes/{owner}/{server}``, exchanged at ``/hub/accept-share``).
:func:`install` keeps those routes, request bodies and responses, and swaps
in subclasses of JupyterHub's handlers (:mod:`.share_handlers`) that first ask the pure
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
allows while its server runs (a policy change, the recipient left a group),
is revoked and the revocation audited. The expiry is also enforced where a
share is used (:mod:`.share_access`, through :meth:`GovernedSharing.end_expired`),
so it holds between reconciles.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from jupyterhub import orm
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Float, Instance, Unicode
from traitlets.config import Config, Configurable

from sovereign_hub.policy import Policy, PolicyError, cached_policy
from sovereign_hub.policy.sharing import Recipient, ShareRefusal, share_expires, share_refusal
from sovereign_hub.reporting import Reporter, ShareEvent

log = logging.getLogger(__name__)
ROUTE_ARGUMENT = "governor"
"""The keyword :func:`install` gives each governed route (see :class:`Governed`)."""


def _utc(moment: datetime) -> datetime:
    # JupyterHub stores naive UTC datetimes.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _ended(policy: Policy, share: orm.Share) -> str:
    if share_expires(policy, _utc(share.created_at)) <= datetime.now(UTC):
        return f"the policy's {policy.sharing.max_minutes} minutes ended"
    return "the end its owner chose came"


class Governed:
    """Mixin of the handlers :func:`install` puts in JupyterHub's route tables.

    Each gets this hub's :class:`GovernedSharing` as its route's keyword argument
    (Tornado passes a route's dictionary to ``initialize``), not from the Tornado
    settings: ``c.JupyterHub.tornado_settings`` is the admin's to set, and a
    ``hub.extraConfig`` that assigns it wholesale would otherwise take the governor
    away, turning every share request into a 500. The route tables are JupyterHub's
    code, which no configuration replaces.
    """

    governor: GovernedSharing

    def initialize(self, governor: GovernedSharing, **kwargs: Any) -> None:
        self.governor = governor
        # JupyterHub's handler, after this mixin in the MRO (untyped).
        super().initialize(**kwargs)  # type: ignore[misc]


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
        0 turns the reconcile off: expired shares then end only when next used (sign-in
        or token check), and shares the policy no longer allows are kept.""",
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
        return self  # one per hub: a copy would be a second governor, reconciling twice

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
        self,
        owner: Any,
        server_name: str,
        recipient: Recipient | None,
        expires_in: float | None = None,
    ) -> tuple[str, ShareRefusal | None]:
        """(region, refusal) for sharing this server; ``recipient`` None for a share code.

        The region is empty when the server is not running.
        """
        region = self.region_of(owner, server_name)
        refused = share_refusal(
            self.policy(),
            owner_groups=tuple(g.name for g in owner.groups),
            region=region,
            recipient=recipient,
            expires_in=expires_in,
        )
        return region or "", refused

    def expires_at(self, created: datetime) -> datetime:
        return share_expires(self.policy(), _utc(created))

    def ends(self, db: Any, share: orm.Share, policy: Policy | None = None) -> datetime:
        """When ``share`` ends: the policy's maximum, or the earlier end its owner chose."""
        from .share_ends import chosen_end

        latest = share_expires(policy or self.policy(), _utc(share.created_at))
        chosen = chosen_end(db, share)
        return min(latest, _utc(chosen)) if chosen is not None else latest

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
            if self.ends(db, share, policy) <= now:
                code, reason = "expired", _ended(policy, share)
            elif refused is not None:
                code, reason = refused.code, refused.message
            else:
                continue
            self.end(db, share, owner.name, region, recipient, code, reason)
            revoked += 1
        if revoked:
            log.info("sharing reconcile revoked %d share(s)", revoked)
        return revoked

    def end(
        self,
        db: Any,
        share: orm.Share,
        owner: str,
        region: str,
        recipient: Recipient,
        code: str,
        reason: str,
    ) -> None:
        """Revoke one share as the hub (actor ``system``), then record it."""
        event = ShareEvent(
            "share_revoked",
            actor="system",
            owner=owner,
            server=share.spawner.name,
            region=region,
            recipient_kind=recipient.kind,
            recipient=recipient.name,
            reason_code=code,
            reason=reason,
        )
        # Revoked first, each on its own: an audit store that is away (or a trail that
        # fails closed) must not keep an expired share open, nor roll back revocations
        # already recorded.
        target, spawner = share.user or share.group, share.spawner
        db.delete(share)
        db.commit()
        # Loaded collections keep a deleted row until they are read again.
        db.expire(target, ["shared_with_me"])
        db.expire(spawner, ["shares"])
        try:
            self.report(event)
        except Exception:
            log.exception(
                "revoked %s's share of %s/%s (%s) but could not record it",
                recipient.name, owner, event.server or "(default)", code,
            )  # fmt: skip

    def end_expired(
        self, db: Any, users: Any, shares: list[orm.Share], now: datetime | None = None
    ) -> int:
        """Revoke those of ``shares`` past the policy's maximum now, rather than at the next
        reconcile: called where a share is about to let someone in. Returns how many."""
        try:
            policy = self.policy()
        except PolicyError:
            return 0  # as the reconcile: a typo in the policy revokes nothing
        now = now or datetime.now(UTC)
        ended = 0
        for share in list(shares):
            if self.ends(db, share, policy) > now:
                continue
            owner = users[share.owner]
            region = self.region_of(owner, share.spawner.name) or ""
            reason = _ended(policy, share)
            recipient = self.recipient_of(share.user or share.group)
            self.end(db, share, owner.name, region, recipient, "expired", reason)
            ended += 1
        return ended

    def start(self, app_instance: Any) -> None:
        """Reconcile every ``reconcile_interval`` seconds in the hub's event loop."""
        # Called once the whole config file has run: take the settings made after install().
        self.update_config(self.config)
        if self.reconcile_interval <= 0:
            app_instance().log.warning(
                "sharing reconcile is off: expired shares end only when used, and shares "
                "the policy no longer allows are kept"
            )
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


def install(c: Config) -> GovernedSharing:
    """Govern this hub's sharing API by the policy; call from ``jupyterhub_config.py``.

    Swaps the handler classes in JupyterHub's route tables (the hub builds its
    Tornado application from them after reading its config), hands each the
    :class:`GovernedSharing` as its route's keyword argument (see :class:`Governed`),
    and starts the reconcile. Called again, it hands the routes the new governor.
    """
    from jupyterhub import apihandlers, handlers
    from jupyterhub.app import JupyterHub

    from . import group_shares
    from .share_handlers import SWAPS

    group_shares.install()  # JupyterHub <= 6.1: group shares give a member's token no access
    governor = GovernedSharing(config=c)
    ours = set(SWAPS.values())
    for table in (apihandlers.default_handlers, handlers.default_handlers):
        for i, route in enumerate(table):
            handler = SWAPS.get(route[1], route[1])
            if handler in ours:
                kwargs = {**(route[2] if len(route) > 2 else {}), ROUTE_ARGUMENT: governor}
                table[i] = (route[0], handler, kwargs, *route[3:])
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        # Not inside a starting hub (JupyterHub reads its config in its event loop).
        log.warning("sharing.install outside the hub's event loop: no reconcile started")
    else:
        IOLoop.current().add_callback(governor.start, JupyterHub.instance)
    return governor
