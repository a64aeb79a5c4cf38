"""Inputs and outputs of the policy decision: plain immutable values, no behaviour."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sovereign_hub.images.reference import digest_of

if TYPE_CHECKING:
    from .datasets import DatasetMount

LABEL_PREFIX = "sovereign-hub.io/"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking, as the authenticator established it."""

    username: str
    groups: frozenset[str] = frozenset()
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Identity-provider attributes (e.g. ``country``), each as a tuple of values."""


@dataclass(frozen=True, slots=True)
class Pin:
    """The image version a user is held on within one channel."""

    channel: str
    version: str
    image: str
    pinned_at: datetime

    def to_state(self) -> dict[str, str]:
        """JSON-safe form for the spawner's persisted state."""
        return {
            "channel": self.channel,
            "version": self.version,
            "image": self.image,
            "pinnedAt": self.pinned_at.isoformat(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Pin:
        return cls(
            channel=str(state["channel"]),
            version=str(state["version"]),
            image=str(state["image"]),
            pinned_at=datetime.fromisoformat(str(state["pinnedAt"])),
        )


@dataclass(frozen=True, slots=True)
class SpawnRequest:
    """What the user asked for, with what the hub knows of them that the decision needs."""

    profile: str
    now: datetime
    """The decision's clock, passed in so the decision stays pure and testable."""
    region: str | None = None
    """None: the only region the user may use for this profile, or a denial asking to choose."""
    version: str | None = None
    """Move the pin to this (newer) version of the profile's channel; None keeps the pin."""
    pins: Mapping[str, Pin] = field(default_factory=dict)
    """The user's current pins, by channel."""


@dataclass(frozen=True, slots=True)
class Usage:
    """GPUs held right now, by quota group and then by user."""

    gpus: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def group_total(self, group: str) -> int:
        return sum(self.gpus.get(group, {}).values())

    def held_by(self, group: str, user: str) -> int:
        return self.gpus.get(group, {}).get(user, 0)


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a request was refused: a stable ``code`` for machines, a ``message`` for people."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class NodeRequirement:
    """One required node-affinity match expression."""

    key: str
    operator: Literal["In"]
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str
    operator: Literal["Exists", "Equal"]
    effect: str
    value: str | None = None


@dataclass(frozen=True, slots=True)
class GpuPlan:
    type: str
    count: int
    resource: str
    product: str
    quota_group: str
    """The group whose quota these GPUs are drawn from."""


PinChangeReason = Literal["first", "upgrade", "revoked", "expired", "withdrawn"]


@dataclass(frozen=True, slots=True)
class ImagePlan:
    channel: str
    version: str
    image: str
    pin: Pin
    """The pin after this spawn (store it)."""
    previous: Pin | None = None
    change: PinChangeReason | None = None
    """Why the pin moved; None when it did not."""
    notice: str | None = None
    """What to tell the user when the pin moved for a reason they did not choose."""

    @property
    def digest(self) -> str:
        return digest_of(self.image)


@dataclass(frozen=True, slots=True)
class PodPlan:
    """Everything the spawner needs to build the user's pod, and nothing it may choose itself."""

    profile: str
    region: str
    image: ImagePlan
    cpu_guarantee: str
    cpu_limit: str
    memory_guarantee: str
    memory_limit: str
    gpu: GpuPlan | None
    node_affinity: tuple[NodeRequirement, ...]
    tolerations: tuple[Toleration, ...]
    storage_class: str
    labels: Mapping[str, str]
    environment: Mapping[str, str]
    datasets: tuple[DatasetMount, ...] = ()
    """Datasets mounted in this region for the user's groups (:mod:`.datasets`)."""


@dataclass(frozen=True, slots=True)
class Allowed:
    plan: PodPlan
    allowed: Literal[True] = True


@dataclass(frozen=True, slots=True)
class Denied:
    reasons: tuple[Reason, ...]
    allowed: Literal[False] = False

    @property
    def message(self) -> str:
        return " ".join(r.message for r in self.reasons)


Decision = Allowed | Denied


@dataclass(frozen=True, slots=True)
class ProfileGrant:
    """A profile the user may start, where, and through which groups."""

    profile: str
    regions: tuple[str, ...]
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Entitlements:
    """What a user may start, in the policy's profile order."""

    grants: tuple[ProfileGrant, ...]

    def __bool__(self) -> bool:
        return bool(self.grants)

    def get(self, profile: str) -> ProfileGrant | None:
        return next((g for g in self.grants if g.profile == profile), None)
