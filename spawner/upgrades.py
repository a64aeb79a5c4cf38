"""A user's choice, made while their server runs, to start on a newer version next time.

A mixin of :class:`~sovereign_hub.spawner.SovereignSpawner`. The choice is kept
per channel in the spawner's persisted state (so it survives a hub restart) and
is checked twice against the policy: when it is made, and again at the start it
applies to, since a version can be revoked in between. A start that names
another version itself wins over the stored choice (the spawn form's default,
"stay on the pinned version", is not such a start); a start that pins the
channel (whatever version) consumes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sovereign_hub.policy import Pin, Policy, SpawnRequest, upgrade_refusal

STATE_FIELD = "upgradeAtNextStart"
"""The key under ``state["sovereign"]``: ``{channel: version}``."""


class UpgradeRefused(ValueError):
    """The choice cannot be made; the message says why, for the person who made it."""


class NextStartUpgrade:
    pins: dict[str, Pin]
    log: Any

    @property
    def upgrade_next(self) -> dict[str, str]:
        """The stored choices, channel → version."""
        try:
            return self._upgrade_next
        except AttributeError:
            self._upgrade_next: dict[str, str] = {}
            return self._upgrade_next

    def choose_upgrade(
        self, channel: str, version: str | None, policy: Policy, now: datetime
    ) -> None:
        """Store (or, with ``version`` None, withdraw) the choice for ``channel``."""
        if version is None:
            self.upgrade_next.pop(channel, None)
            return
        if channel not in policy.channels or channel not in self.pins:
            raise UpgradeRefused(f"You have no pinned image in channel {channel!r} to upgrade.")
        if why := upgrade_refusal(policy.channels[channel], self.pins[channel], version, now):
            raise UpgradeRefused(why)
        self.upgrade_next[channel] = version

    def with_upgrade_choice(
        self, request: SpawnRequest, policy: Policy
    ) -> tuple[SpawnRequest, str | None]:
        """``request`` with the stored version for its profile's channel, and a notice when a
        stored choice no longer applies (it is then dropped)."""
        profile = policy.profiles.get(request.profile)
        if profile is None:
            return request, None
        channel = profile.channel
        version = self.upgrade_next.get(channel)
        pin = self.pins.get(channel)
        # The spawn form always sends a version, its default being "stay on the pinned
        # one": that is no choice against the stored one. Another version named is.
        staying = pin is not None and request.version == pin.version
        if version is None or (request.version is not None and not staying):
            return request, None
        why = (
            upgrade_refusal(policy.channels[channel], pin, version, request.now)
            if pin is not None and channel in policy.channels
            else "the image is no longer pinned"
        )
        if why is not None:
            del self.upgrade_next[channel]
            return request, f"Your chosen upgrade to version {version} was not applied: {why}"
        return dataclasses.replace(request, version=version), None

    def upgrade_pinned(self, channel: str) -> None:
        """A start pinned ``channel``: a stored choice for it is spent."""
        self.upgrade_next.pop(channel, None)

    def upgrade_state(self) -> dict[str, str]:
        return dict(self.upgrade_next)

    def load_upgrade_state(self, stored: Any) -> None:
        self.upgrade_next.clear()
        if not isinstance(stored, Mapping):
            return
        for channel, version in stored.items():
            if isinstance(channel, str) and isinstance(version, str):
                self.upgrade_next[channel] = version
            else:
                self.log.warning("ignoring an unreadable upgrade choice %r: %r", channel, version)
