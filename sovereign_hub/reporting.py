"""The one interface through which the spawner and the authenticator report what happens.

The audit subsystem implements :class:`Reporter`; until it is configured,
:class:`LogReporter` writes one line per event to the hub's log. Records carry
identifiers, decisions and placement, never tokens, secrets or request bodies.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SessionEventKind = Literal[
    "login",
    "login_denied",
    "logout",
    "spawn_requested",
    "spawn_denied",
    "server_started",
    "spawn_failed",
    "server_stopped",
    "image_pin_changed",
    "gpu_queued",
    "gpu_admitted",
    "gpu_abandoned",
    "dataset_mounted",
]
OPTION_KEYS = ("profile", "region", "version")
"""The only ``user_options`` a user may send (the spawner refuses others), and the only
parts of a request an event records."""
MAX_OPTION_LENGTH = 100
"""Longest accepted option value, in characters."""


def recordable_request(options: dict[str, Any]) -> dict[str, str]:
    """What may be recorded of a request: the allowed keys with short text values, nothing else.

    Applied to what the user sent before it is checked, so a refused request is
    recorded without echoing whatever it carried.
    """
    return {
        key: value
        for key, value in options.items()
        if key in OPTION_KEYS and isinstance(value, str) and len(value) <= MAX_OPTION_LENGTH
    }


StopReason = Literal["user", "admin", "idle_cull", "failure", "entitlement_lost", "unknown"]


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One step of a user's server, from request to stop.

    Only the fields that apply to ``kind`` are set; ``reasons`` holds the
    decision's codes and messages for ``spawn_denied``.
    """

    kind: SessionEventKind
    user: str
    server: str = ""
    profile: str | None = None
    region: str | None = None
    cluster: str | None = None
    """The Kubernetes cluster of the region (``hub`` for the hub's own)."""
    channel: str | None = None
    image: str | None = None
    image_version: str | None = None
    previous_image: str | None = None
    gpus: int = 0
    gpu_type: str | None = None
    quota_group: str | None = None
    node: str | None = None
    reasons: tuple[tuple[str, str], ...] = ()
    stop_reason: StopReason | None = None
    detail: str | None = None
    groups: tuple[str, ...] = ()
    admin: bool | None = None
    request: dict[str, Any] = field(default_factory=dict)
    position: int | None = None
    """Place in the GPU queue (``gpu_queued``)."""
    waited: float | None = None
    """Seconds spent in the GPU queue (``gpu_queued`` 0, then admitted or abandoned)."""
    dataset: str | None = None
    """The policy dataset mounted (``dataset_mounted``)."""
    mode: str | None = None
    """``read-only`` or ``read-write`` (``dataset_mounted``)."""
    mount_path: str | None = None
    """Where the dataset is mounted (``dataset_mounted``)."""
    source: str | None = None
    """The kind of the dataset's source (``dataset_mounted``)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: v for k, v in data.items() if v not in (None, (), {}, 0) or k == "gpus"}


ShareEventKind = Literal["share_granted", "share_refused", "share_revoked", "share_accessed"]


@dataclass(frozen=True, slots=True)
class ShareEvent:
    """A share of a running server granted, refused, revoked or used (JupyterHub's sharing API).

    ``recipient_kind`` is ``code`` for a share code not yet exchanged; ``reason_code``
    and ``reason`` say why a share was refused or revoked (``revoked``: by a person).
    """

    kind: ShareEventKind
    actor: str
    owner: str
    server: str
    region: str
    recipient_kind: Literal["user", "group", "code"]
    recipient: str = ""
    expires_at: str | None = None
    reason_code: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class AuditUnavailable(RuntimeError):
    """The audit trail cannot record events and is configured to fail closed."""


class Reporter:
    """Receives every session event. Implementations must not block: queue and return."""

    def report(self, event: SessionEvent) -> None:
        raise NotImplementedError

    def policy_seen(self, path: str, sha256: str) -> None:
        """The hub is deciding with the policy at ``path`` whose hash is ``sha256``.

        Called on every use; implementations record only a change of hash.
        """

    def share(self, event: ShareEvent) -> None:
        """A share was granted, refused or revoked; by default, one line in the hub's log."""
        fields = " ".join(f"{k}={v!r}" for k, v in event.to_dict().items() if k != "kind")
        logging.getLogger("sovereign_hub.sharing").info("%s %s", event.kind, fields)

    def __deepcopy__(self, memo: dict[int, Any]) -> Reporter:
        # A process-wide service placed in traitlets config, which deep-copies
        # config for every spawner: all of them must share this one.
        return self


class LogReporter(Reporter):
    """Writes each event as one log line (the default until audit sinks are configured)."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logging.getLogger("sovereign_hub.sessions")

    def report(self, event: SessionEvent) -> None:
        fields = " ".join(f"{k}={v!r}" for k, v in event.to_dict().items() if k != "kind")
        self.log.info("%s %s", event.kind, fields)


class RecordingReporter(Reporter):
    """Keeps events in memory: for tests and for the sandbox's first steps."""

    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        self.shares: list[ShareEvent] = []

    def report(self, event: SessionEvent) -> None:
        self.events.append(event)

    def share(self, event: ShareEvent) -> None:
        self.shares.append(event)
