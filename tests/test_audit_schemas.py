"""Audit event schemas: table-driven valid and invalid events; both validators agree."""

from __future__ import annotations

import hashlib
import shutil
from typing import get_args

import pytest
import yaml
from jupyter_events.schema_registry import SchemaRegistry

from sovereign_hub.audit import schemas
from sovereign_hub.audit.checkpoint import SYSTEM_FAMILIES
from sovereign_hub.audit.reporter import event_data, schema_of
from sovereign_hub.audit.schemas import InvalidEvent, Validators
from sovereign_hub.audit.viewer.query import EVENTS
from sovereign_hub.reporting import SessionEvent, SessionEventKind, ShareEventKind

# Version 1 of the spawn events (before the region's cluster): still registered, so a trail
# written by an earlier release validates.
SPAWN_REQUESTED_V1 = f"{schemas.BASE}/spawn-requested/v1"
SERVER_STARTED_V1 = f"{schemas.BASE}/server-started/v1"
SPAWN_FAILED_V1 = f"{schemas.BASE}/spawn-failed/v1"
SERVER_STOPPED_V1 = f"{schemas.BASE}/server-stopped/v1"

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

MOUNTED = {
    **WHO,
    "server": "",
    "dataset": "climate",
    "region": "eu",
    "mode": "read-only",
    "mount_path": "/data/climate",
    "source": "persistentVolumeClaim",
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
    (SPAWN_REQUESTED_V1, {**WHO, "server": "", "profile": "gpu-a100", "region": "eu"}),
    (schemas.SPAWN_DENIED, {**WHO, "server": "", "reasons": [{"code": "x", "message": "y"}]}),
    (
        SERVER_STARTED_V1,
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
    (SPAWN_FAILED_V1, {**WHO, "server": "", "detail": "timeout"}),
    (schemas.SPAWN_REQUESTED, {**WHO, "server": "", "region": "us", "cluster": "us-iad"}),
    (schemas.SPAWN_REQUESTED, {**WHO, "server": ""}),
    (schemas.SPAWN_FAILED, {**WHO, "server": "", "detail": "timeout", "cluster": "hub"}),
    (schemas.SERVER_STOPPED, {**WHO, "server": "", "reason": "user", "cluster": "eu-fra"}),
    (schemas.GPU_QUEUED, {**QUEUED, "position": 3, "blocked_by": "capacity"}),
    (schemas.GPU_ADMITTED, {**QUEUED, "waited_seconds": 912.5}),
    (schemas.GPU_ABANDONED, {**QUEUED, "waited_seconds": 3600, "reason": "max_wait"}),
    (SERVER_STOPPED_V1, {**WHO, "server": "", "reason": "idle_cull"}),
    (schemas.DATASET_MOUNTED, MOUNTED),
    (schemas.DATASET_MOUNTED, {**MOUNTED, "profile": "cpu-small", "mode": "read-write"}),
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
        SERVER_STARTED_V1,
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
        SERVER_STARTED_V1,
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
    (SERVER_STOPPED_V1, {**WHO, "server": "", "reason": "bored"}),
    (schemas.SERVER_STOPPED, {**WHO, "server": "", "reason": "user"}),  # no cluster
    (schemas.SPAWN_FAILED, {**WHO, "server": "", "detail": "x", "cluster": "c" * 101}),
    (SERVER_STOPPED_V1, {**WHO, "server": "", "reason": "user", "cluster": "hub"}),  # v1
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
    (schemas.DATASET_MOUNTED, {**MOUNTED, "mode": "ro"}),  # the two modes, spelled out
    (schemas.DATASET_MOUNTED, {k: v for k, v in MOUNTED.items() if k != "region"}),
    (schemas.DATASET_MOUNTED, {**MOUNTED, "source": "hostPath"}),
    (schemas.DATASET_MOUNTED, {**MOUNTED, "claim_name": "climate-eu"}),  # no source settings
]


def test_every_schema_file_is_registered_with_a_versioned_id():
    files = schemas.schema_files()
    ids = {yaml.safe_load(path.read_text())["$id"] for path in files}
    # Every file is registered (older versions too, to read old trails); what the code emits
    # (one constant per family) is the newest version of each: no event without a schema,
    # no family never used.
    constants = {
        value
        for name, value in vars(schemas).items()
        if name.isupper() and isinstance(value, str) and value.startswith(f"{schemas.BASE}/")
    }
    newest: dict[str, tuple[int, str]] = {}
    for schema_id in ids:
        version = int(schema_id.rsplit("/v", 1)[1])
        fam = schemas.family(schema_id)
        newest[fam] = max(newest.get(fam, (0, "")), (version, schema_id))
    assert ids == set(REGISTRY.schema_ids)
    assert constants == {schema_id for _, schema_id in newest.values()}
    for path in files:
        raw = yaml.safe_load(path.read_text())
        assert raw["$id"] == schemas.schema_id(path)  # what LATEST derives from the path
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
            cluster="eu-fra",
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
            cluster="hub",
            image=IMAGE,
            gpus=1,
            detail="timeout",
        ),
        SessionEvent(
            "server_stopped",
            "ana",
            profile="cpu",
            region="eu",
            cluster="eu-fra",
            image=IMAGE,
            stop_reason="failure",
        ),
        SessionEvent("server_stopped", "ana", cluster="hub"),
        SessionEvent("spawn_requested", "ana", region="us", cluster="us-iad"),
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
            "dataset_mounted",
            "ana",
            profile="cpu-small",
            region="eu",
            dataset="climate",
            mode="read-write",
            mount_path="/data/climate",
            source="nfs",
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
    data = event_data(event)
    V.validate(schema_of(event.kind), data)
    assert "image" not in data or event.kind != "spawn_requested"  # only allowed options are kept


def test_a_released_schema_is_never_edited_in_place():
    """Stored events name their schema's version; a reader of an old trail validates them
    against that exact file. An edited v1 (as audit-viewed once gained `overview`) would call
    an old record invalid or a new one valid under a schema it breaks: changes add v<N+1>."""
    manifest = schemas.SCHEMA_DIR / "released.sha256"
    released = {}
    for line in manifest.read_text().splitlines():
        if line and not line.startswith("#"):
            path, digest = line.split()
            released[path] = digest
    assert "audit-viewed/v1.yaml" in released
    for path, digest in released.items():
        actual = hashlib.sha256((schemas.SCHEMA_DIR / path).read_bytes()).hexdigest()
        assert actual == digest, f"{path} was edited after release: add a new version instead"


def test_the_viewer_records_the_overview_under_a_newer_version_than_v1():
    validators = Validators()
    viewed = {"actor": "sam", "subject": "", "view": "overview", "filters": {}}
    validators.validate(schemas.AUDIT_VIEWED, viewed)
    with pytest.raises(InvalidEvent):
        validators.validate(f"{schemas.BASE}/audit-viewed/v1", viewed)


@pytest.mark.parametrize("kind", [*get_args(SessionEventKind), *get_args(ShareEventKind)])
def test_every_reported_kind_is_a_schema_family(kind):
    # The kinds are a Literal for the type checker; each is an emitted family.
    assert schema_of(kind) == schemas.EMITTED[kind.replace("_", "-")]


def test_what_the_hub_emits_is_the_newest_schema_of_every_family():
    """Each emit's version is written out (schemas.emitted); this fails when a schema file
    newer than the pin lands, until the payload and the pin are updated together."""
    assert schemas.stale_emits() == []
    assert schemas.EMITTED == schemas.LATEST


def test_a_new_schema_version_changes_nothing_emitted_and_fails_the_guard(tmp_path):
    """A v<N+1> with a new required field must not reach every emit site by itself (each
    emit would then raise): the hub keeps emitting its pinned version and the guard names
    the family and both versions."""
    shutil.copytree(schemas.SCHEMA_DIR, tmp_path / "schemas")
    logout = yaml.safe_load((schemas.SCHEMA_DIR / "logout" / "v1.yaml").read_text())
    newer = {**logout, "$id": f"{schemas.BASE}/logout/v2", "version": "2"}
    newer["required"] = [*newer.get("required", []), "reason"]
    (tmp_path / "schemas" / "logout" / "v2.yaml").write_text(yaml.safe_dump(newer))

    assert schemas.latest_ids(tmp_path / "schemas")["logout"] == f"{schemas.BASE}/logout/v2"
    assert f"{schemas.BASE}/logout/v1" == schemas.LOGOUT
    assert schema_of("logout") == schemas.LOGOUT
    (problem,) = schemas.stale_emits(tmp_path / "schemas")
    assert problem.startswith("logout: the newest schema is v2 but the hub emits v1")


def test_a_pin_to_a_missing_version_is_refused_at_import():
    with pytest.raises(schemas.SchemaFileError, match=r"emits logout v9, but .*logout/v9\.yaml"):
        schemas.emitted("logout", 9)


@pytest.mark.parametrize("name", ["v2-draft.yaml", "v02.yaml", "v0.yaml", "V2.yaml", "v3.yml"])
def test_a_schema_file_not_named_v_n_is_named_in_a_clear_error(tmp_path, name):
    """Not an int() traceback at import, and not silently skipped (see schema_files)."""
    shutil.copytree(schemas.SCHEMA_DIR, tmp_path / "schemas")
    stray = tmp_path / "schemas" / "login" / name
    stray.write_text((schemas.SCHEMA_DIR / "login" / "v1.yaml").read_text())
    for load in (schemas.schema_files, schemas.latest_ids, schemas.readable_events, Validators):
        with pytest.raises(schemas.SchemaFileError, match=rf"login/{name}: not an audit schema"):
            load(tmp_path / "schemas")


def test_a_new_schema_file_shows_up_everywhere(tmp_path):
    """Adding ``<family>/v<N>.yaml`` makes it validated and filterable in the viewer with
    no list of events to edit; emitting it takes an emitted() pin (guarded above)."""
    shutil.copytree(schemas.SCHEMA_DIR, tmp_path / "schemas")
    login = yaml.safe_load((schemas.SCHEMA_DIR / "login" / "v1.yaml").read_text())
    added = {**login, "$id": f"{schemas.BASE}/quota-changed/v1", "title": "Quota changed"}
    (tmp_path / "schemas" / "quota-changed").mkdir()
    (tmp_path / "schemas" / "quota-changed" / "v1.yaml").write_text(yaml.safe_dump(added))
    newer = {**login, "$id": f"{schemas.BASE}/logout/v2", "version": "2"}
    (tmp_path / "schemas" / "logout" / "v2.yaml").write_text(yaml.safe_dump(newer))

    latest = schemas.latest_ids(tmp_path / "schemas")
    assert latest["quota-changed"] == f"{schemas.BASE}/quota-changed/v1"
    assert latest["logout"] == f"{schemas.BASE}/logout/v2"
    assert "quota-changed" in schemas.readable_events(tmp_path / "schemas")
    validators = Validators(tmp_path / "schemas")
    validators.validate(latest["quota-changed"], {**WHO, "groups": [], "admin": False})
    with pytest.raises(InvalidEvent):
        validators.validate(latest["quota-changed"], {**WHO, "admin": "yes"})
    # And today's files are exactly what the code emits and the viewer filters by.
    assert set(schemas.LATEST) == {p.parent.name for p in schemas.schema_files()}
    assert set(schemas.EMITTED) == set(schemas.LATEST)
    assert tuple(f for f in schemas.LATEST if f not in schemas.PROOFS) == EVENTS
