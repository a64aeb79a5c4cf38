"""What the spawner keeps in JupyterHub's database: the user's image pins and what a server holds.

``state[STATE_KEY]`` is ``{"pins": {channel: Pin.to_state()}, "allocation":
Allocation.to_state() or None}``. Pins outlive servers; an allocation lives
from a successful plan to the server's stop, and after a hub restart it is
how the GPUs a running server holds are counted again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, get_args

from sovereign_hub.policy import HUB_CLUSTER, Pin, PodPlan, Policy, pin_outlook
from sovereign_hub.policy.decision import LABEL_PREFIX
from sovereign_hub.reporting import StopReason

STATE_KEY = "sovereign"
"""The spawner's entry in its persisted state (KubeSpawner owns the rest)."""

_STOP_REASONS = frozenset(get_args(StopReason))


@dataclass(frozen=True, slots=True)
class Allocation:
    """What one server was given by its plan, and what became of it.

    Reported when the server starts and stops; its profile and region are what
    a refresh checks the user is still entitled to.
    """

    profile: str
    region: str
    channel: str
    image: str
    image_version: str
    gpus: int = 0
    gpu_type: str | None = None
    quota_group: str | None = None
    home: str = ""
    """The home volume's claim name."""
    started: float = 0.0
    """When the plan was applied (seconds since the epoch)."""
    node: str | None = None
    """The node the pod runs on, once it runs."""
    stopped: StopReason | None = None
    """Why the server is stopping, when the hub knows before KubeSpawner stops it."""
    cluster: str = HUB_CLUSTER
    """The Kubernetes cluster the server's pod and home volume are in (its region's)."""

    @classmethod
    def of(cls, plan: PodPlan, home: str, started: float, cluster: str = HUB_CLUSTER) -> Allocation:
        return cls(
            profile=plan.profile,
            region=plan.region,
            channel=plan.image.channel,
            image=plan.image.image,
            image_version=plan.image.version,
            gpus=plan.gpu.count if plan.gpu else 0,
            gpu_type=plan.gpu.type if plan.gpu else None,
            quota_group=plan.gpu.quota_group if plan.gpu else None,
            home=home,
            started=started,
            cluster=cluster,
        )

    def placement(self) -> dict[str, Any]:
        """The fields session events carry (profile to quota group, and the cluster)."""
        return {
            "profile": self.profile,
            "region": self.region,
            "cluster": self.cluster,
            "channel": self.channel,
            "image": self.image,
            "image_version": self.image_version,
            "gpus": self.gpus,
            "gpu_type": self.gpu_type,
            "quota_group": self.quota_group,
        }

    def to_state(self) -> dict[str, Any]:
        """JSON-safe form for the spawner's persisted state."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Allocation:
        """Read :meth:`to_state`'s form; raise KeyError, ValueError or TypeError if unusable."""
        stopped = state.get("stopped")
        if stopped is not None and stopped not in _STOP_REASONS:
            raise ValueError(f"unknown stop reason {stopped!r}")
        return cls(
            profile=str(state["profile"]),
            region=str(state["region"]),
            channel=str(state["channel"]),
            image=str(state["image"]),
            image_version=str(state["image_version"]),
            gpus=int(state.get("gpus") or 0),
            gpu_type=_text_or_none(state.get("gpu_type")),
            quota_group=_text_or_none(state.get("quota_group")),
            home=str(state.get("home") or ""),
            started=float(state.get("started") or 0.0),
            node=_text_or_none(state.get("node")),
            stopped=stopped,
            # Saved before regions had clusters: the hub's own was the only one.
            cluster=str(state.get("cluster") or HUB_CLUSTER),
        )


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def state_entry(pins: Mapping[str, Pin], allocation: Allocation | None) -> dict[str, Any]:
    """``state[STATE_KEY]`` for these pins and this allocation."""
    return {
        "pins": {channel: pin.to_state() for channel, pin in pins.items()},
        "allocation": allocation.to_state() if allocation else None,
    }


def outlook_entry(
    pins: Mapping[str, Pin], policy: Policy, now: datetime
) -> dict[str, dict[str, Any]]:
    """What lies ahead for each pin in a channel the policy still has (for the REST API).

    Computed when the state is read, not kept: the date and the policy change what it says,
    so :func:`read_state` ignores a copy found in the database.
    """
    return {
        channel: pin_outlook(policy.channels[channel], pin, now).to_state()
        for channel, pin in pins.items()
        if channel in policy.channels
    }


def read_state(
    state: Mapping[str, Any], log: logging.Logger | logging.LoggerAdapter[Any], who: str
) -> tuple[dict[str, Pin], Allocation | None]:
    """Pins and allocation from a persisted state; what cannot be read is logged and dropped."""
    mine = state.get(STATE_KEY) or {}
    pins: dict[str, Pin] = {}
    for channel, pin in (mine.get("pins") or {}).items():
        try:
            pins[channel] = Pin.from_state(pin)
        except (KeyError, ValueError, TypeError):
            log.warning("ignoring unreadable image pin for %s in channel %s", who, channel)
    allocation = None
    if mine.get("allocation"):
        try:
            allocation = Allocation.from_state(mine["allocation"])
        except (KeyError, ValueError, TypeError):
            log.warning("ignoring unreadable allocation of %s's server", who)
    return pins, allocation


def allocation_from_pod(
    pod: Mapping[str, Any], gpu_resources: Mapping[str, str]
) -> Allocation | None:
    """The allocation a running pod of this spawner shows, for a server whose saved state
    has none: the hub was killed after the pod was created and before JupyterHub saved the
    state. Without it, the pod's GPUs would be held by no quota. ``gpu_resources`` maps
    each policy GPU type to its extended resource name. None for a pod without the plan's
    labels (not made by this spawner).
    """
    meta = pod.get("metadata") or {}
    labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
    profile, region = labels.get(f"{LABEL_PREFIX}profile"), labels.get(f"{LABEL_PREFIX}region")
    if not profile or not region:
        return None
    gpu_type = labels.get(f"{LABEL_PREFIX}gpu-type")
    gpus = 0
    if gpu_type is not None and gpu_type in gpu_resources:
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        limits = (containers[0].get("resources") or {}).get("limits") or {}
        with contextlib.suppress(TypeError, ValueError):
            gpus = int(limits.get(gpu_resources[gpu_type], 0))
    return Allocation(
        profile=profile,
        region=region,
        channel=labels.get(f"{LABEL_PREFIX}channel", ""),
        image=notes.get(f"{LABEL_PREFIX}image", ""),
        image_version=notes.get(f"{LABEL_PREFIX}image-version", ""),
        gpus=gpus,
        gpu_type=gpu_type,
        quota_group=notes.get(f"{LABEL_PREFIX}gpu-quota-group") if gpus else None,
        node=(pod.get("spec") or {}).get("nodeName"),
    )
