"""What lies ahead for a pin: newer versions on offer, and when and why it will be moved.

Pure, like :func:`~sovereign_hub.policy.decide`, and in agreement with it: a
pin :func:`decide` would move at a start made at ``now`` is reported here as
``moves_at_next_start``, with the same reason code (``revoked``,
``withdrawn``, ``expired``). The home page and the REST API show this so a
person hears of a forced move before it happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from .decision import Pin
from .model import Channel

MoveReason = Literal["revoked", "withdrawn", "expired"]


@dataclass(frozen=True, slots=True)
class NewerVersion:
    version: str
    image: str
    released: date


@dataclass(frozen=True, slots=True)
class PinOutlook:
    """A pin seen against its channel at one moment."""

    newer: tuple[NewerVersion, ...]
    """Versions after the pinned one that are not revoked, oldest first (an upgrade choice)."""
    expires_on: date | None
    """The last day the pin is kept (``maxPinAgeDays`` after it was set); None: never."""
    move_reason: MoveReason | None
    """Why the next start will move the pin to :attr:`move_to`; None: it stays."""
    move_to: str | None
    """The version a forced move goes to (the channel's newest)."""
    revoked_because: str | None = None
    """The channel's reason when the pinned version was revoked."""

    def to_state(self) -> dict[str, Any]:
        """JSON for scripts (the REST API's server state), camelCase like a pin's ``to_state``."""
        return {
            "newer": [
                {"version": v.version, "image": v.image, "released": v.released.isoformat()}
                for v in self.newer
            ],
            "expiresOn": self.expires_on.isoformat() if self.expires_on else None,
            "moveAtNextStart": self.move_reason,
            "moveTo": self.move_to,
            "revokedBecause": self.revoked_because,
        }


def pin_outlook(channel: Channel, pin: Pin, now: datetime) -> PinOutlook:
    """The outlook of ``pin`` in ``channel`` at ``now`` (the same rules, in the same order, as
    :func:`~sovereign_hub.policy.decide` applies at a start)."""
    versions = channel.versions
    newest = versions[channel.newest]
    at = channel.position.get(pin.version)
    if at is not None and versions[at].image != pin.image:
        at = None  # re-pointed to another digest: the pinned image is gone
    max_age = channel.max_pin_age_days
    expires_on = (pin.pinned_at + timedelta(days=max_age)).date() if max_age else None
    newer = tuple(
        NewerVersion(v.version, v.image, v.released)
        for v in versions[(at + 1 if at is not None else len(versions)) :]
        if not v.revoked
    )
    reason: MoveReason | None = None
    revoked_because = None
    if at is None:
        reason = "withdrawn"
    elif versions[at].revoked:
        reason, revoked_because = "revoked", versions[at].revoked
    elif max_age is not None and now - pin.pinned_at > timedelta(days=max_age):
        reason = "expired"
    return PinOutlook(
        newer=newer,
        expires_on=expires_on,
        move_reason=reason,
        move_to=newest.version if reason else None,
        revoked_because=revoked_because,
    )


def upgrade_refusal(channel: Channel, pin: Pin, version: str, now: datetime) -> str | None:
    """Why ``version`` cannot be chosen now for the next start of a server pinned at ``pin``.

    None when it can: it is one of the :attr:`PinOutlook.newer` versions and no forced move
    is already coming (that move decides the next start's version, not a choice).
    """
    outlook = pin_outlook(channel, pin, now)
    if outlook.move_reason is not None:
        return (
            f"Your next start already moves {channel.display_name} to version {outlook.move_to} "
            f"(your version {pin.version} is {outlook.move_reason})."
        )
    offered = [v.version for v in outlook.newer]
    if not offered:
        return f"No version of {channel.display_name} newer than {pin.version} is on offer."
    if version not in offered:
        return (
            f"Version {version!r} of {channel.display_name} is not on offer above your version "
            f"{pin.version}; the newer versions are {', '.join(offered)}."
        )
    return None
