"""The spawner's and authenticator's session events, as audit events."""

from __future__ import annotations

from typing import Any

from sovereign_hub.images.reference import digest_of
from sovereign_hub.reporting import Reporter, SessionEvent, ShareEvent, recordable_request

from . import schemas
from .trail import AuditTrail


def schema_of(kind: str) -> str:
    """The schema the hub emits a session or share event under (pinned in
    :data:`.schemas.EMITTED`): its kind is its family, ``_`` for ``-``
    (``spawn_denied`` → ``spawn-denied``)."""
    return schemas.EMITTED[kind.replace("_", "-")]


_QUEUE = ("gpu_queued", "gpu_admitted", "gpu_abandoned")
_PLACEMENT = (
    "profile",
    "region",
    "cluster",
    "channel",
    "image",
    "image_version",
    "gpu_type",
    "quota_group",
    "node",
)


def event_data(event: SessionEvent) -> dict[str, Any]:
    data: dict[str, Any] = {"actor": event.user, "subject": event.user}
    if event.kind == "login":
        return {**data, "groups": sorted(event.groups)[:500], "admin": bool(event.admin)}
    if event.kind == "login_denied":
        code, message = event.reasons[0] if event.reasons else ("denied", event.detail or "")
        return {**data, "reason_code": code[:64], "reason": message[:2000]}
    if event.kind == "logout":
        return data
    if event.kind != "image_pin_changed":
        data["server"] = event.server
    if event.kind in _QUEUE:
        return _queue_data(event, data)
    if event.kind == "dataset_mounted":
        if event.profile:
            data["profile"] = event.profile
        return {
            **data,
            "dataset": event.dataset or "",
            "region": event.region or "",
            "mode": event.mode or "read-only",
            "mount_path": event.mount_path or "",
            "source": event.source or "",
        }
    if event.kind == "spawn_requested":
        data.update(recordable_request(event.request))
        if event.profile:
            data["profile"] = event.profile
        if event.cluster:
            data["cluster"] = event.cluster
        return data
    for name in _PLACEMENT:
        value = getattr(event, name)
        if value is not None:
            data[name] = value
    if event.image and digest_of(event.image):
        data["digest"] = digest_of(event.image)
    if event.kind in ("server_started", "spawn_failed", "server_stopped"):
        data["gpus"] = event.gpus
    if event.kind == "spawn_denied":
        data = {
            k: data[k] for k in ("actor", "subject", "server", "profile", "region") if k in data
        }
        data["reasons"] = [{"code": c, "message": m} for c, m in event.reasons]
    elif event.kind == "spawn_failed":
        data["detail"] = (event.detail or "")[:4000]
    elif event.kind == "server_stopped":
        data["reason"] = event.stop_reason or "unknown"
    elif event.kind == "image_pin_changed":
        data = {
            k: v
            for k, v in data.items()
            if k in ("actor", "subject", "channel", "image", "image_version", "digest")
        }
        if event.previous_image:
            data["previous_image"] = event.previous_image
        data["reason"] = event.detail
    return data


def _queue_data(event: SessionEvent, data: dict[str, Any]) -> dict[str, Any]:
    data.update(
        profile=event.profile or "",
        region=event.region or "",
        gpu_type=event.gpu_type or "",
        gpus=event.gpus,
        quota_group=event.quota_group or "",
        waited_seconds=event.waited or 0.0,
    )
    if event.kind == "gpu_queued":
        data["position"] = event.position or 1
        data["blocked_by"] = event.detail or "waiters_ahead"
    elif event.kind == "gpu_abandoned":
        data["reason"] = event.detail or "cancelled"
    return data


def share_data(event: ShareEvent) -> dict[str, Any]:
    """A share event as its schema's data: the owner is the subject."""
    data = event.to_dict()
    data.pop("kind")
    data["subject"] = data.pop("owner")
    if event.kind != "share_granted":
        data.pop("expires_at", None)
    if event.kind in ("share_granted", "share_accessed"):
        data.pop("reason_code", None)
        data.pop("reason", None)
    return data


class AuditReporter(Reporter):
    """Writes session events to an :class:`AuditTrail`.

    Raises :class:`~sovereign_hub.reporting.AuditUnavailable` when the trail fails closed.
    """

    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail
        self._policies: dict[str, str] = {}

    def report(self, event: SessionEvent) -> None:
        self.trail.emit(schema_of(event.kind), event_data(event))

    def share(self, event: ShareEvent) -> None:
        self.trail.emit(schema_of(event.kind), share_data(event))

    def policy_seen(self, path: str, sha256: str) -> None:
        if self._policies.get(path) == sha256:
            return
        self._policies[path] = sha256
        self.trail.emit(
            schemas.POLICY_LOADED,
            {"actor": "system", "subject": "system", "policy_file": path, "policy_sha256": sha256},
        )
