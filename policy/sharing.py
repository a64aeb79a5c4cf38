"""Who may share a running server with whom: the ``sharing`` section and its pure decision.

JupyterHub 5 lets a user grant another user or a group access to a server
(a *share*). The hub consults :func:`share_refusal` before it grants one and
again on every reconcile, so a share lives only while the policy would still
grant it. Like :func:`~sovereign_hub.policy.decide`, it does no I/O: the
caller passes the groups it read from the hub and the server's region.

Rules, in the order they are checked (the first that fails is the reason):

1. the server is running, so it has a region (``not_running``);
2. one of the owner's groups has a ``sharing.groups`` entry (``not_permitted``);
3. that entry names the recipient: the user, or a group the user (or the
   recipient group itself) is in (``recipient_not_allowed``);
4. the recipient is entitled to the server's region through one of its groups'
   ``regions`` (``region_not_entitled``): a server's data stays with people
   who may see its region;
5. a share code asks for no longer than ``sharing.maxMinutes`` (``too_long``).

A share code has no recipient until it is exchanged: for one, rules 3 and 4
are left to the exchange (the caller passes no recipient).

Region attributes (``regions.<r>.requireAttributes``) live in a user's login
state, which the hub does not hold for a user who is not logged in; they are
not checked here, only group entitlements are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from .base import PolicyModel

if TYPE_CHECKING:
    from .model import Policy

_Name = Annotated[str, Field(min_length=1, max_length=256)]

RefusalCode = Literal[
    "not_running", "not_permitted", "recipient_not_allowed", "region_not_entitled", "too_long"
]


_SharingModel = PolicyModel


class SharingRule(_SharingModel):
    """Whom the members of one group may share their running servers with."""

    with_groups: tuple[_Name, ...] = ()
    """Groups whose members (or the group as a whole) may receive a share."""
    with_users: tuple[_Name, ...] = ()
    """Individual users who may receive a share, whatever their groups."""


class Sharing(_SharingModel):
    """Sharing of running servers through JupyterHub's sharing API; off unless a group is named."""

    max_minutes: int = Field(default=480, ge=1, le=43200)
    """Longest a share lasts, in minutes (1 to 43200, 30 days); the hub revokes it after.
    Share codes are capped to the same time."""
    groups: dict[_Name, SharingRule] = Field(default_factory=dict)
    """Rules by the owner's group; a user none of whose groups is listed may not share."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who would receive a share: a user with their groups, or a group."""

    kind: Literal["user", "group"]
    name: str
    groups: tuple[str, ...] = ()
    """The user's groups; ignored for a group (the group itself counts)."""

    @property
    def memberships(self) -> tuple[str, ...]:
        return (self.name,) if self.kind == "group" else self.groups


@dataclass(frozen=True, slots=True)
class ShareRefusal:
    """Why a share may not exist; ``message`` is shown to the person sharing."""

    code: RefusalCode
    message: str


def share_refusal(
    policy: Policy,
    *,
    owner_groups: tuple[str, ...],
    region: str | None,
    recipient: Recipient | None,
    expires_in: float | None = None,
) -> ShareRefusal | None:
    """The reason a share of a server in ``region`` with ``recipient`` is refused, or None.

    ``region`` is None when the server is not running; ``recipient`` is None for a
    share code (whose recipient is checked when it is exchanged); ``expires_in`` is
    the lifetime in seconds a share code asks for.
    """
    if region is None:
        return ShareRefusal("not_running", "only a running server can be shared; start it first")
    rules = [policy.sharing.groups[g] for g in owner_groups if g in policy.sharing.groups]
    if not rules:
        return ShareRefusal(
            "not_permitted",
            "the policy does not let your groups share servers"
            + (f" ({', '.join(sorted(owner_groups))})" if owner_groups else ""),
        )
    if recipient is not None:
        refused = _recipient_refusal(policy, rules, region, recipient)
        if refused is not None:
            return refused
    longest = policy.sharing.max_minutes * 60
    if expires_in is not None and expires_in > longest:
        return ShareRefusal(
            "too_long",
            f"expires_in {expires_in:g} is longer than the policy allows ({longest} seconds)",
        )
    return None


def _recipient_refusal(
    policy: Policy, rules: list[SharingRule], region: str, recipient: Recipient
) -> ShareRefusal | None:
    users = {u for rule in rules for u in rule.with_users}
    groups = {g for rule in rules for g in rule.with_groups}
    named = recipient.kind == "user" and recipient.name in users
    if not named and not groups.intersection(recipient.memberships):
        allowed = [f"group {g}" for g in sorted(groups)] + [f"user {u}" for u in sorted(users)]
        return ShareRefusal(
            "recipient_not_allowed",
            f"you may not share with {recipient.kind} {recipient.name}; the policy lets you "
            f"share with {', '.join(allowed) or 'no one'}",
        )
    if not any(
        region in policy.groups[g].regions for g in recipient.memberships if g in policy.groups
    ):
        shown = policy.regions[region].display_name if region in policy.regions else region
        return ShareRefusal(
            "region_not_entitled",
            f"{recipient.kind} {recipient.name} is not entitled to region {region!r} ({shown}) "
            "where this server runs, so it may not be shared with them",
        )
    return None


def share_expires(policy: Policy, created: datetime) -> datetime:
    """When a share created at ``created`` ends under this policy."""
    return created + timedelta(minutes=policy.sharing.max_minutes)


@dataclass(frozen=True, slots=True)
class SharingRights:
    """What a user's groups let them do with shares (``sovhub policy explain``)."""

    via_groups: tuple[str, ...]
    """The user's groups with a sharing rule; empty: they may not share."""
    max_minutes: int
    recipients: dict[str, tuple[str, ...]]
    """By region the user may run servers in: the groups a server there may be shared
    with (allowed by a rule and entitled to that region)."""
    users: tuple[str, ...]
    """Users the rules name; each still needs to be entitled to the server's region."""
    receive_from: tuple[str, ...]
    """Owner groups whose rules name this user (or one of their groups) as a recipient."""
    receive_regions: tuple[str, ...]
    """Regions whose servers this user may receive: those their groups are entitled to."""


def sharing_rights(
    policy: Policy, username: str, groups: frozenset[str] | tuple[str, ...]
) -> SharingRights:
    """The sharing rights of ``username`` with ``groups`` under ``policy``; no I/O."""
    mine = sorted(g for g in groups if g in policy.groups)
    regions = sorted({r for g in mine for r in policy.groups[g].regions})
    via = tuple(g for g in sorted(groups) if g in policy.sharing.groups)
    rules = [policy.sharing.groups[g] for g in via]
    allowed = sorted({g for rule in rules for g in rule.with_groups})
    recipients = (
        {
            region: tuple(
                g for g in allowed if g in policy.groups and region in policy.groups[g].regions
            )
            for region in regions
        }
        if via
        else {}
    )
    users = tuple(sorted({u for rule in rules for u in rule.with_users}))
    receive_from = tuple(
        owner
        for owner, rule in sorted(policy.sharing.groups.items())
        if username in rule.with_users or set(rule.with_groups) & set(groups)
    )
    return SharingRights(
        via, policy.sharing.max_minutes, recipients, users, receive_from, tuple(regions)
    )
