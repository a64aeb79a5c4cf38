"""Generated hostile spawn requests against the pure options → request → decision layer.

The same generator (:mod:`tests.attacks`) drives ``test_spawn_api_fuzz`` through a
real hub; here it runs at 10,000+ examples per CI run because nothing but pure
functions is involved. A *bypass* is an allowed plan outside the user's
entitlement, or an allowed plan reached through a name that is not exactly
the policy's own (a look-alike that something normalised on the way).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sovereign_hub.audit import schemas
from sovereign_hub.audit.reporter import event_data
from sovereign_hub.audit.store import read
from sovereign_hub.audit.trail import AuditTrail
from sovereign_hub.audit.verify import verify
from sovereign_hub.policy import Allowed, Denied, Identity, Usage, decide, entitlements, load_policy
from sovereign_hub.reporting import SessionEvent, recordable_request
from sovereign_hub.spawner.options import (
    ALLOWED,
    MAX_VALUE_LENGTH,
    Choice,
    OptionsError,
    parse_user_options,
)
from sovereign_hub.spawner.request import spawn_request
from tests.attacks import spawn_bodies
from tests.conftest import ROOT

POLICY = load_policy(ROOT / "examples" / "policy.yaml").policy
NOW = datetime(2026, 11, 29, tzinfo=UTC)
VERSIONS = {v.version for c in POLICY.channels.values() for v in c.versions}
IDENTITIES = [
    Identity("ana", frozenset({"eu-researchers"})),
    Identity("bob", frozenset({"us-analysts"})),
    Identity("carol"),
    Identity("dan", frozenset({"eu-researchers\u200b", "US-ANALYSTS", "admins"})),
]
BODIES = spawn_bodies(POLICY.profiles, POLICY.regions, VERSIONS)
# 10,000 per CI run (about 10 s); SOVEREIGN_FUZZ_EXAMPLES raises it for a longer hunt.
KEY = "fuzz-key-" + "k" * 32
EXAMPLES = int(os.environ.get("SOVEREIGN_FUZZ_EXAMPLES", "10000"))


def judge(identity: Identity, body: Any, usage: Usage) -> str:
    """Run ``body`` through the spawner's pure layer; fail on a bypass; return the outcome."""
    try:
        choice = parse_user_options(body)
    except OptionsError as exc:
        refused = exc
    else:
        refused = None
    if refused is not None:
        assert refused.status in (400, 403)
        assert refused.message
        assert "\x00" not in refused.message
        return f"refused-{refused.status}"
    assert isinstance(choice, Choice)
    for key in ALLOWED:
        value = getattr(choice, key)
        assert value is None or (type(value) is str and 0 < len(value) <= MAX_VALUE_LENGTH)
        # What reaches the decision and the audit trail is plain text: no NUL, no control
        # character, no lone surrogate (which UTF-8 encoders and PostgreSQL refuse).
        assert value is None or value.isprintable(), (key, value)
    request = spawn_request(choice, identity, POLICY, {}, NOW)
    if request is None:
        return "refused-no-entitlement"
    decision = decide(identity, request, POLICY, usage)
    if isinstance(decision, Denied):
        assert decision.reasons
        return "refused-403"
    assert isinstance(decision, Allowed)
    plan = decision.plan
    grant = entitlements(identity, POLICY).get(plan.profile)
    assert grant is not None, f"bypass: {identity.username} got {plan.profile} from {body!r}"
    assert plan.region in grant.regions, f"bypass: {plan.region} from {body!r}"
    # Exact names only: nothing but the policy's own spelling selects a profile or region.
    assert choice.profile in (None, plan.profile), body
    assert choice.region in (None, plan.region), body
    channel = POLICY.channels[POLICY.profiles[plan.profile].channel]
    offered = {v.image for v in channel.versions if not v.revoked}
    assert plan.image.image in offered
    if choice.version is not None:
        assert choice.version == plan.image.version
    assert recordable_request(dict(body or {})).keys() <= set(ALLOWED)
    return "allowed"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.sampled_from(IDENTITIES), BODIES, st.sampled_from([0, 2, 4]))
def test_no_generated_request_escapes_the_entitlement(identity, body, held):
    judge(identity, body, Usage({"eu-researchers": {"someone": held}}))


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"profile": "cpu-small\x00"}, 400),
        ({"region": "e\u0075\u200b"}, 400),
        ({"profile": "gpu-a100", "region": "eu\u202e"}, 400),
        ({"profile": "\ud800"}, 400),
        ({"version": "2026.11\n"}, 400),
    ],
)
def test_control_and_invisible_characters_in_options_are_refused_with_the_reason(body, status):
    with pytest.raises(OptionsError) as refused:
        parse_user_options(body)
    assert refused.value.status == status
    key = list(body)[-1]
    assert f"option {key!r} contains" in refused.value.message
    assert "U+" in refused.value.message


@pytest.fixture
def hmac_key(monkeypatch):
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", KEY)


@pytest.mark.parametrize(
    "text", ["\ud800", "eu\x00", "\u202egpu", "x\udfffy", "\u200b", "a\r\nb", "\x1b[31m"]
)
def test_the_trail_records_and_verifies_events_carrying_hostile_text(tmp_path, hmac_key, text):
    """Found by the fuzz: a lone surrogate made the trail's encoder raise after the
    sequence number was taken, so the event was lost and the chain showed a gap; a NUL
    in a filter column would be refused by PostgreSQL forever. Both are kept now."""
    store = tmp_path / "audit.sqlite"
    trail = AuditTrail(
        spool_dir=str(tmp_path / "spool"),
        sinks=[{"type": "sqlite", "path": str(store)}],
        hub_instance="hub-fuzz",
    ).start()
    denied = SessionEvent(
        kind="spawn_denied",
        user="mallory",
        server="",
        profile=text,
        region=text,
        reasons=(("unknown_profile", f"There is no profile {text!r}."),),
    )
    requested = SessionEvent(
        kind="spawn_requested", user="mallory", server="", profile=text, request={"region": text}
    )
    trail.emit(schemas.SPAWN_REQUESTED, event_data(requested))
    trail.emit(schemas.SPAWN_DENIED, event_data(denied))
    trail.stop()
    records = [r for r in read(str(store)) if r["schema"] == schemas.SPAWN_DENIED]
    assert len(records) == 1
    assert records[0]["data"]["subject"] == "mallory"
    report = verify(read(str(store)), KEY.encode())
    assert report.ok, report
