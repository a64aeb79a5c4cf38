"""The home page's status card: what each server runs, since when, and what is coming.

Presentation only. The facts are the spawner's persisted pins and allocation
(:mod:`sovereign_hub.spawner.state`); what lies ahead is
:func:`sovereign_hub.policy.pin_outlook`. :class:`ServerCards` is the
``JupyterHub.template_vars`` hook the home page template calls with the
signed-in user.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sovereign_hub.images.reference import digest_of
from sovereign_hub.policy import Pin, Policy, PolicyError, cached_policy, pin_outlook
from sovereign_hub.policy.sharing import share_expires, share_refusal
from sovereign_hub.spawner.state import STATE_KEY, Allocation, read_state
from sovereign_hub.spawner.upgrades import STATE_FIELD as UPGRADE_FIELD

NOTICE_DAYS = 14
"""How many days before a pin expires the card warns of the move."""
SHORT_DIGEST = 19
"""``sha256:`` and the first 12 hex digits, as ``docker images`` shows them."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PinRow:
    channel: str
    """The channel's display name."""
    version: str
    digest_short: str
    pinned_since: str
    upgrade_to: str | None
    """The newest version on offer above the pin, if any."""
    notice: str | None
    """A coming forced move, with its date or "at your next start"."""
    urgent: bool
    """The move happens at the next start (shown as a warning, not as information)."""
    key: str = ""
    """The channel's name in the policy (what the upgrade choice's form sends)."""
    chosen: str | None = None
    """The version the user chose, while the server ran, for its next start."""


@dataclass(frozen=True, slots=True)
class ShareRow:
    """One active share of a server, as its owner sees it on the card."""

    kind: str
    """``user`` or ``group``: what the revoke button sends JupyterHub."""
    name: str
    ends: str
    """When the policy's maximum ends it, UTC, to the minute."""


@dataclass(frozen=True, slots=True)
class SharePanel:
    """The card's "Share" form and its active shares (only where the owner may share)."""

    api_url: str
    """JupyterHub's (governed) ``/hub/api/shares/{owner}/{server}`` the form posts to."""
    max_minutes: int
    shares: tuple[ShareRow, ...]
    lengths: tuple[tuple[int, str], ...] = ()
    """How long a new share may last, in minutes, with its label; the last is the maximum."""


LENGTHS = ((60, "1 hour"), (240, "4 hours"), (1440, "1 day"), (10080, "1 week"))
"""The shorter lengths the form offers, where the policy's maximum is longer."""


def share_lengths(max_minutes: int) -> tuple[tuple[int, str], ...]:
    """The lengths to offer: those of :data:`LENGTHS` below the maximum, then the maximum."""
    shorter = tuple((m, label) for m, label in LENGTHS if m < max_minutes)
    return (*shorter, (max_minutes, f"{max_minutes} minutes (the longest allowed)"))


def share_panel(
    policy: Policy,
    owner_groups: tuple[str, ...],
    region: str | None,
    shares: Any,
    api_url: str,
    chosen: Callable[[Any], datetime | None] = lambda share: None,
) -> SharePanel | None:
    """The share panel of a running server in ``region``, or None when its owner may not
    share it (the policy's rules 1 and 2: it runs, and a group of theirs may share).

    ``shares`` are JupyterHub's ``orm.Share`` rows of the server (with ``user`` or
    ``group`` and ``created_at``, naive UTC); ``chosen`` gives the end an owner chose
    for one (naive UTC), if any.
    """
    if share_refusal(policy, owner_groups=owner_groups, region=region, recipient=None):
        return None
    rows = []
    for share in shares:
        target = share.user or share.group
        created = (
            share.created_at.replace(tzinfo=UTC)
            if share.created_at.tzinfo is None
            else share.created_at
        )
        ends = share_expires(policy, created)
        if (picked := chosen(share)) is not None:
            ends = min(ends, picked.replace(tzinfo=UTC))
        kind = "group" if share.group is not None else "user"
        rows.append(ShareRow(kind, target.name, ends.strftime("%Y-%m-%d %H:%M UTC")))
    rows.sort(key=lambda r: (r.kind, r.name))
    longest = policy.sharing.max_minutes
    return SharePanel(api_url, longest, tuple(rows), share_lengths(longest))


@dataclass(frozen=True, slots=True)
class ServerCard:
    name: str
    running: bool
    profile: str | None
    region: str | None
    gpus: str | None
    node: str | None
    pins: tuple[PinRow, ...]
    upgrade_url: str | None
    """Starts the server on the newest version (only for a stopped server with a last choice)."""
    sharing: SharePanel | None = None
    """The "Share" form and active shares, for a running server its owner may share."""


def pin_row(
    channel_name: str, pin: Pin, policy: Policy, now: datetime, chosen: str | None = None
) -> PinRow:
    channel = policy.channels.get(channel_name)
    base = {
        "key": channel_name,
        "version": pin.version,
        "digest_short": digest_of(pin.image)[:SHORT_DIGEST],
        "pinned_since": pin.pinned_at.date().isoformat(),
    }
    if channel is None:
        return PinRow(channel_name, **base, upgrade_to=None, notice=None, urgent=False)
    outlook = pin_outlook(channel, pin, now)
    notice, urgent = None, False
    if outlook.move_reason == "revoked":
        notice = (
            f"Version {pin.version} was revoked ({outlook.revoked_because}): your next start "
            f"moves to version {outlook.move_to}."
        )
        urgent = True
    elif outlook.move_reason == "withdrawn":
        notice = (
            f"Version {pin.version} is no longer offered: your next start moves to "
            f"version {outlook.move_to}."
        )
        urgent = True
    elif outlook.move_reason == "expired":
        notice = (
            f"Your pin expired on {outlook.expires_on} ({channel.max_pin_age_days} days): "
            f"your next start moves to version {outlook.move_to}."
        )
        urgent = True
    elif outlook.expires_on and outlook.expires_on - now.date() <= timedelta(days=NOTICE_DAYS):
        newest = channel.versions[channel.newest].version
        notice = (
            f"Your pin expires on {outlook.expires_on}; the first start after that moves "
            f"to version {newest}."
        )
    upgrade = outlook.newer[-1].version if outlook.newer and not urgent else None
    offered = {v.version for v in outlook.newer}
    return PinRow(
        channel.display_name,
        **base,
        upgrade_to=upgrade,
        notice=notice,
        urgent=urgent,
        chosen=chosen if chosen in offered and not urgent else None,
    )


def server_card(
    name: str,
    running: bool,
    pins: Mapping[str, Pin],
    allocation: Allocation | None,
    policy: Policy,
    now: datetime,
    spawn_url: str = "",
    last_options: Mapping[str, Any] | None = None,
    chosen: Mapping[str, str] | None = None,
) -> ServerCard:
    """The card of one server; a running server shows its allocation and its channel's pin."""
    live = allocation if running else None
    shown = {live.channel: pins[live.channel]} if live and live.channel in pins else pins
    chosen = chosen or {}
    rows = tuple(pin_row(c, p, policy, now, chosen.get(c)) for c, p in sorted(shown.items()))
    gpus = None
    if live and live.gpus:
        kind = policy.gpu_types.get(live.gpu_type or "")
        gpus = f"{live.gpus} × {kind.display_name if kind else live.gpu_type}"
    profile = region = None
    if live:
        p, r = policy.profiles.get(live.profile), policy.regions.get(live.region)
        profile = p.display_name if p else live.profile
        region = r.display_name if r else live.region
    upgrade_url = None
    options = dict(last_options or {})
    chosen = options.get("profile")
    if not running and spawn_url and chosen in policy.profiles:
        channel = policy.profiles[chosen].channel
        row = pin_row(channel, pins[channel], policy, now) if channel in pins else None
        if row and row.upgrade_to:
            query = {"profile": chosen, f"version-{chosen}": row.upgrade_to}
            if options.get("region"):
                query[f"region-{chosen}"] = options["region"]
            upgrade_url = f"{spawn_url}?{urlencode(query)}"
    return ServerCard(
        name=name,
        running=running,
        profile=profile,
        region=region,
        gpus=gpus,
        node=live.node if live else None,
        pins=rows,
        upgrade_url=upgrade_url,
    )


@dataclass(frozen=True, slots=True)
class ServerCards:
    """``JupyterHub.template_vars`` hook: the signed-in user's server cards (home page).

    JupyterHub calls it with the current user (None when signed out). A policy
    that cannot be read shows no cards; the spawn page says why.
    """

    policy_file: str
    base_url: str = "/hub/"
    sharing: bool = True
    """Offer the "Share" form (the hub runs the governed sharing API)."""

    def __call__(self, user: Any) -> Callable[[], list[ServerCard]]:
        # JupyterHub calls this for every page it renders: the cards are only
        # built when a template asks for them (`sovereign_servers()`).
        return functools.partial(self.cards, user)

    def cards(self, user: Any) -> list[ServerCard]:
        if user is None:
            return []
        try:
            policy = cached_policy(self.policy_file).policy
        except PolicyError:
            return []
        now = datetime.now(UTC)
        return [self._card(user, spawner, policy, now) for spawner in user.all_spawners()]

    def _card(self, user: Any, spawner: Any, policy: Policy, now: datetime) -> ServerCard:
        pins, allocation, running, chosen = spawner_facts(user, spawner)
        spawn_url = f"{self.base_url}spawn/{user.escaped_name}"
        if spawner.name:
            spawn_url += f"/{spawner.name}"
        panel = None
        if self.sharing and running and allocation is not None:
            row = getattr(spawner, "orm_spawner", spawner)
            panel = share_panel(
                policy,
                tuple(g.name for g in user.groups),
                allocation.region,
                row.shares,
                f"{self.base_url}api/shares/{user.escaped_name}/{spawner.name}",
                _chosen_end,
            )
        card = server_card(
            spawner.name,
            running,
            pins,
            allocation,
            policy,
            now,
            spawn_url=spawn_url,
            last_options=getattr(spawner, "user_options", None),
            chosen=chosen,
        )
        return replace(card, sharing=panel)


def spawner_facts(
    user: Any, spawner: Any
) -> tuple[dict[str, Pin], Allocation | None, bool, dict[str, str]]:
    """Pins, allocation, whether it runs and the stored upgrade choices, of a live spawner
    or a stopped server's row."""
    if hasattr(spawner, "pins"):  # a live SovereignSpawner
        return dict(spawner.pins), spawner.allocation, bool(spawner.ready), spawner.upgrade_state()
    # The database row of a server not started since the hub started, or the row behind a
    # live spawner of another class (stock KubeSpawner has no pins and no ``state``).
    row = getattr(spawner, "orm_spawner", None) or spawner
    state = row.state or {}
    pins, allocation = read_state(state, log, f"{user.name}:{spawner.name}")
    stored = (state.get(STATE_KEY) or {}).get(UPGRADE_FIELD)
    chosen = {k: v for k, v in (stored or {}).items() if isinstance(v, str)}
    return pins, allocation, row.server is not None, chosen


def _chosen_end(share: Any) -> datetime | None:
    from sqlalchemy.orm import object_session

    from sovereign_hub.share_ends import chosen_end

    return chosen_end(object_session(share), share)
