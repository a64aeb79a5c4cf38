"""Audit event schemas: table-driven valid and invalid events; both validators agree."""

from __future__ import annotations

import pytest
import yaml
from jupyter_events.schema_registry import SchemaRegistry

from sovereign_hub.audit import schemas
from sovereign_hub.audit.checkpoint import SYSTEM_FAMILIES
from sovereign_hub.audit.reporter import event_data
from sovereign_hub.audit.schemas import InvalidEvent, Validators
from sovereign_hub.reporting import SessionEvent

V = Validators()
REGISTRY: SchemaRegistry = V.registry
DIGEST = "sha256:" + "a" * 64
IMAGE = "quay.io/jupyter/base-notebook@" + DIGEST
WHO = {"actor": "ana", "subject": "ana"}
SYSTEM = {"actor": "system", "subject": ""}
CHECKPOINT = {
    **SYSTEM,
    "first_seq": 1,
    "last_seq": 1000,
    "digest": "b" * 64,
    "previous": "",
    "every_records": 1000,
    "every_seconds": 60,
    "final": False,
    "key_id": "e-0123456789abcdef",
    "signature": "a" * 128,
}

QUEUED = {
    **WHO,
    "server": "",
    "profile": "gpu-a100",
    "region": "eu",
    "gpu_type": "a100",
    "gpus": 1,
    "quota_group": "eu-researchers",
    "waited_seconds": 0.0,
}

SHARE = {
    **WHO,
    "server": "",
    "region": "eu",
    "recipient_kind": "user",
    "recipient": "carla",
}


VALID = [
    (schemas.SHARE_GRANTED, {**SHARE, "expires_at": "2026-11-29T18:00:00+00:00"}),
    (
        schemas.SHARE_REFUSED,
        {**SHARE, "reason_code": "region_not_entitled", "reason": "not in eu"},
    ),
    (schemas.SHARE_REVOKED, {**SHARE, "reason_code": "expired", "reason": "ended"}),
    (
        schemas.SHARE_REVOKED,
        {**SHARE, "recipient_kind": "code", "recipient": "", "reason_code": "revoked"},
    ),
    (schemas.LOGIN, {**WHO, "groups": ["eu-researchers"], "admin": False}),
    (
        schemas.LOGIN_DENIED,
        {**WHO, "reason_code": "no_entitlement", "reason": "none of your groups"},
    ),
    (schemas.LOGOUT, WHO),
    (schemas.SPAWN_REQUESTED, {**WHO, "server": "", "profile": "gpu-a100", "region": "eu"}),
    (schemas.SPAWN_DENIED, {**WHO, "server": "", "reasons": [{"code": "x", "message": "y"}]}),
    (
        schemas.SERVER_STARTED,
        {
            **WHO,
            "server": "",
            "profile": "p",
            "region": "eu",
            "image": IMAGE,
            "digest": DIGEST,
            "gpus": 2,
            "gpu_type": "a100",
            "node": "n1",
        },
    ),
    (schemas.SPAWN_FAILED, {**WHO, "server": "", "detail": "timeout"}),
    (schemas.GPU_QUEUED, {**QUEUED, "position": 3, "blocked_by": "capacity"}),
    (schemas.GPU_ADMITTED, {**QUEUED, "waited_seconds": 912.5}),
    (schemas.GPU_ABANDONED, {**QUEUED, "waited_seconds": 3600, "reason": "max_wait"}),
    (schemas.SERVER_STOPPED, {**WHO, "server": "", "reason": "idle_cull"}),
    (
        schemas.IMAGE_PIN_CHANGED,
        {**WHO, "channel": "ds", "image": IMAGE, "digest": DIGEST, "reason": "revoked"},
    ),
    (
        schemas.POLICY_LOADED,
        {"actor": "system", "subject": "", "policy_file": "/etc/p.yaml", "policy_sha256": "b" * 64},
    ),
    (
        schemas.API_ACTION,
        {
            "actor": "admin",
            "subject": "ana",
            "method": "DELETE",
            "route": "/hub/api/users/{name}/server",
            "target_user": "ana",
            "status": 204,
        },
    ),
    (
        schemas.HUB_SERVER_ACTION,
        {"actor": "system", "subject": "ana", "action": "stop", "server": ""},
    ),
    (
        schemas.AUDIT_VIEWED,
        {"actor": "sam", "subject": "ana", "view": "timeline", "filters": {"user": "ana"}},
    ),
    (schemas.CHECKPOINT, CHECKPOINT),
    (schemas.CHECKPOINT, {**CHECKPOINT, "key_id": "", "signature": ""}),  # no signing key
    (schemas.CHECKPOINT, {**CHECKPOINT, "first_seq": 5, "last_seq": 4}),  # an idle heartbeat
    (schemas.EPOCH_STARTED, {**SYSTEM, "previous_state": "unknown", "looked_in": "no sink"}),
    (
        schemas.EPOCH_STARTED,
        {
            **SYSTEM,
            "previous_state": "found",
            "previous_epoch": "",
            "previous_seq": 1200,
            "previous_mac": "c" * 64,
            "previous_time": "2026-11-29T10:00:00.000000Z",
            "looked_in": "postgresql",
        },
    ),
    (
        schemas.RETENTION,
        {
            "actor": "root",
            "subject": "",
            "through_seq": 1001,
            "removed": 1001,
            "last_mac": "c" * 64,
            "last_checkpoint": "d" * 64,
            "before": "2026-01-01T00:00:00Z",
            "key_id": "e-0123456789abcdef",
            "signature": "a" * 128,
        },
    ),
]
INVALID = [
    (schemas.SHARE_GRANTED, SHARE),  # a grant without its expiry
    (schemas.SHARE_GRANTED, {**SHARE, "expires_at": "x", "code": "secret"}),  # no codes
    (schemas.SHARE_REFUSED, {**SHARE, "reason_code": "bored", "reason": "x"}),
    (schemas.SHARE_REVOKED, {**SHARE, "recipient_kind": "everyone", "reason_code": "revoked"}),
    (schemas.CHECKPOINT, {**CHECKPOINT, "subject": "ana"}),  # about no user
    (schemas.CHECKPOINT, {**CHECKPOINT, "signature": "not-hex"}),
    (schemas.CHECKPOINT, {**CHECKPOINT, "every_seconds": 1.5}),  # no floats in the chain
    (schemas.EPOCH_STARTED, {**SYSTEM, "previous_state": "lost"}),
    (schemas.RETENTION, {"actor": "root", "subject": "", "through_seq": 10}),
    (schemas.LOGIN, {"subject": "ana"}),  # no actor
    (
        schemas.LOGIN,
        {**WHO, "token": "eyJhbGciOi..."},
    ),  # secrets have no place: unknown keys refused
    (
        schemas.SERVER_STARTED,
        {
            **WHO,
            "server": "",
            "profile": "p",
            "region": "eu",
            "image": IMAGE,
            "digest": "sha256:short",
            "gpus": 1,
        },
    ),
    (
        schemas.SERVER_STARTED,
        {
            **WHO,
            "server": "",
            "profile": "p",
            "region": "eu",
            "image": IMAGE,
            "digest": DIGEST,
            "gpus": -1,
        },
    ),
    (schemas.SERVER_STOPPED, {**WHO, "server": "", "reason": "bored"}),
    (
        schemas.API_ACTION,
        {**WHO, "method": "GET", "route": "/x", "status": 200},
    ),  # reads are not actions
    (schemas.API_ACTION, {**WHO, "method": "POST", "route": "/x", "status": 200, "body": "{...}"}),
    (schemas.SPAWN_DENIED, {**WHO, "server": "", "reasons": "no"}),
    (schemas.GPU_QUEUED, {**QUEUED, "position": 0, "blocked_by": "quota"}),  # 1 is next
    (schemas.GPU_QUEUED, {**QUEUED, "blocked_by": "quota"}),  # the position is the point
    (schemas.GPU_ADMITTED, {**QUEUED, "waited_seconds": -1}),
    (schemas.GPU_ABANDONED, {**QUEUED, "reason": "bored"}),
    (schemas.GPU_ABANDONED, {**QUEUED, "reason": "cancelled", "others": ["bob"]}),
]


def test_every_schema_file_is_registered_with_a_versioned_id():
    files = schemas.schema_files()
    ids = {yaml.safe_load(path.read_text())["$id"] for path in files}
    # What the code emits (one constant per id) and what the files declare are the same
    # set, and all of it is registered: no event without a schema, no schema never used.
    constants = {
        value
        for name, value in vars(schemas).items()
        if name.isupper() and isinstance(value, str) and value.startswith(f"{schemas.BASE}/")
    }
    assert ids == set(REGISTRY.schema_ids) == constants
    for path in files:
        raw = yaml.safe_load(path.read_text())
        assert raw["$id"].endswith(f"/{path.parent.name}/{path.stem}")
        assert isinstance(raw["version"], str)
        # The trail's records about itself name no user; every other event does.
        assert raw["personal-data"] is (path.parent.name not in SYSTEM_FAMILIES)
        assert "Does not capture" in raw["description"]  # each schema says what it leaves out


@pytest.mark.parametrize(("schema_id", "data"), VALID, ids=[s.split("/")[-2] for s, _ in VALID])
def test_valid_events(schema_id, data):
    V.validate(schema_id, data)
    REGISTRY.validate_event(schema_id, data)  # jupyter_events agrees


@pytest.mark.parametrize(
    ("schema_id", "data"),
    INVALID,
    ids=[f"{s.split('/')[-2]}-{i}" for i, (s, _) in enumerate(INVALID)],
)
def test_invalid_events(schema_id, data):
    with pytest.raises(InvalidEvent):
        V.validate(schema_id, data)
    with pytest.raises(Exception):  # noqa: B017,PT011 - jupyter_events raises jsonschema's ValidationError
        REGISTRY.validate_event(schema_id, data)


@pytest.mark.parametrize(
    "event",
    [
        SessionEvent(
            "spawn_requested", "ana", request={"profile": "gpu-a100", "region": "eu", "image": "x"}
        ),
        SessionEvent(
            "spawn_denied", "bob", profile="gpu-a100", reasons=(("profile_not_entitled", "no"),)
        ),
        SessionEvent(
            "server_started",
            "ana",
            profile="gpu-a100",
            region="eu",
            channel="pytorch",
            image=IMAGE,
            image_version="1",
            gpus=1,
            gpu_type="a100",
            quota_group="g",
            node="n",
        ),
        SessionEvent(
            "spawn_failed",
            "ana",
            profile="gpu-a100",
            region="eu",
            image=IMAGE,
            gpus=1,
            detail="timeout",
        ),
        SessionEvent(
            "server_stopped", "ana", profile="cpu", region="eu", image=IMAGE, stop_reason="failure"
        ),
        SessionEvent("server_stopped", "ana"),
        SessionEvent(
            "gpu_queued",
            "ana",
            profile="gpu-a100",
            region="eu",
            gpu_type="a100",
            gpus=1,
            quota_group="g",
            waited=0.0,
            position=2,
            detail="quota",
        ),
        SessionEvent(
            "gpu_admitted",
            "ana",
            profile="p",
            region="eu",
            gpu_type="a100",
            gpus=2,
            quota_group="g",
            waited=61.2,
        ),
        SessionEvent(
            "gpu_abandoned",
            "ana",
            profile="p",
            region="eu",
            gpu_type="a100",
            gpus=1,
            quota_group="g",
            waited=3600.0,
            detail="max_wait",
        ),
        SessionEvent(
            "image_pin_changed",
            "ana",
            channel="ds",
            image=IMAGE,
            image_version="2",
            previous_image=IMAGE,
            detail="upgrade",
        ),
    ],
    ids=lambda e: e.kind,
)
def test_every_session_event_becomes_a_valid_audit_event(event):
    from sovereign_hub.audit.reporter import _SCHEMA

    data = event_data(event)
    V.validate(_SCHEMA[event.kind], data)
    assert "image" not in data or event.kind != "spawn_requested"  # only allowed options are kept
