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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sovereign_hub.images.reference import digest_of
from sovereign_hub.policy import Pin, Policy, PolicyError, cached_policy, pin_outlook
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
        return server_card(
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
