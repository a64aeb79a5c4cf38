"""pin_outlook: newer versions and forced moves, in agreement with decide()."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from sovereign_hub.policy import Allowed, Identity, Pin, SpawnRequest, Usage, decide, pin_outlook
from tests.policies import D1, D2, D3, TEXT, policy

NOW = datetime(2026, 6, 1, tzinfo=UTC)
REVOKED = policy(
    TEXT.replace(
        f'image: "{D1}", released: 2026-01-01}}',
        f'image: "{D1}", released: 2026-01-01, revoked: "CVE-2026-42 in libfoo"}}',
    )
)
PLAIN = policy()
D9 = "registry.example/ds@sha256:" + "8" * 64


def pin(version: str, image: str, days_ago: int) -> Pin:
    return Pin("ds", version, image, NOW - timedelta(days=days_ago))


CASES = [
    # (policy, pin, newer versions, move reason, move to)
    (PLAIN, pin("2", D2, 5), ("3",), None, None),
    (PLAIN, pin("3", D3, 5), (), None, None),
    (PLAIN, pin("1", D1, 31), ("2", "3"), "expired", "3"),
    (REVOKED, pin("1", D1, 2), ("2", "3"), "revoked", "3"),
    (PLAIN, pin("0", D9, 2), (), "withdrawn", "3"),
    (PLAIN, pin("2", D9, 2), (), "withdrawn", "3"),  # version re-pointed to another digest
]


@pytest.mark.parametrize(("pol", "p", "newer", "reason", "to"), CASES)
def test_outlook_names_newer_versions_and_the_coming_move(pol, p, newer, reason, to):
    outlook = pin_outlook(pol.channels["ds"], p, NOW)
    assert tuple(v.version for v in outlook.newer) == newer
    assert (outlook.move_reason, outlook.move_to) == (reason, to)


@pytest.mark.parametrize(("pol", "p", "newer", "reason", "to"), CASES)
def test_the_outlook_agrees_with_what_decide_does_at_a_start(pol, p, newer, reason, to):
    identity = Identity("ana", frozenset({"eu-research"}), {"country": ("DE",)})
    decision = decide(identity, SpawnRequest("cpu", NOW, pins={"ds": p}), pol, Usage())
    assert isinstance(decision, Allowed), decision
    assert decision.plan.image.change == reason
    if to:
        assert decision.plan.image.version == to


def test_the_expiry_date_is_max_pin_age_days_after_pinning():
    outlook = pin_outlook(PLAIN.channels["ds"], pin("2", D2, 25), NOW)
    assert outlook.expires_on == date(2026, 5, 7) + timedelta(days=30)
    assert outlook.move_reason is None
    assert pin_outlook(PLAIN.channels["torch"], pin("1", D1, 900), NOW).expires_on is None


def test_a_revoked_pin_says_why():
    outlook = pin_outlook(REVOKED.channels["ds"], pin("1", D1, 1), NOW)
    assert outlook.revoked_because == "CVE-2026-42 in libfoo"
