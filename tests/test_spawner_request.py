"""The spawner's request resolution, a pure function of choice, identity, policy, pins and clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sovereign_hub.policy import Denied, Identity, Pin, Reason, SpawnRequest, load_policy
from sovereign_hub.reporting import recordable_request
from sovereign_hub.spawner.options import Choice
from sovereign_hub.spawner.request import refusal_message, spawn_request, timeout_message
from tests.conftest import ROOT

POLICY = load_policy(ROOT / "examples" / "policy.yaml").policy
NOW = datetime(2026, 11, 26, tzinfo=UTC)
ANA = Identity("ana", frozenset({"eu-researchers"}))
PIN = Pin("datascience", "2026.10", "registry.example/ds@sha256:" + "0" * 64, NOW)


@pytest.mark.parametrize(
    ("choice", "identity", "expected"),
    [
        # No profile chosen: the first granted profile in the policy's order.
        (Choice(), ANA, SpawnRequest("cpu-small", NOW, pins={"datascience": PIN})),
        # A chosen profile passes as is, even one not granted: the decision says why not.
        (
            Choice("gpu-a100", "eu", "2026.11"),
            ANA,
            SpawnRequest("gpu-a100", NOW, "eu", "2026.11", {"datascience": PIN}),
        ),
        (
            Choice("gpu-a100"),
            Identity("bob", frozenset({"us-analysts"})),
            SpawnRequest("gpu-a100", NOW, pins={"datascience": PIN}),
        ),
        # Nothing chosen and nothing granted: no request at all.
        (Choice(), Identity("carol", frozenset({"contractors"})), None),
        (Choice(), Identity("nobody"), None),
    ],
)
def test_spawn_request(choice, identity, expected):
    assert spawn_request(choice, identity, POLICY, {"datascience": PIN}, NOW) == expected


def test_the_request_holds_a_copy_of_the_pins():
    pins = {"datascience": PIN}
    request = spawn_request(Choice(), ANA, POLICY, pins, NOW)
    pins.clear()
    assert request is not None
    assert request.pins == {"datascience": PIN}


def test_refusal_message_says_whom_to_ask_only_to_users_without_groups():
    denied = Denied((Reason("profile_not_granted", "You may not start gpu-a100."),))
    assert refusal_message(denied, ANA, "Ask IT.") == "You may not start gpu-a100."
    assert (
        refusal_message(denied, Identity("x"), "Ask IT.") == "You may not start gpu-a100. Ask IT."
    )


@pytest.mark.parametrize(
    ("sent", "recorded"),
    [
        ({"profile": "cpu-small", "region": "eu"}, {"profile": "cpu-small", "region": "eu"}),
        ({"profile": "x" * 101}, {}),
        ({"profile": ["cpu-small"], "image": "evil:latest"}, {}),
        ({"version": "2026.11", "node_selector": {"gpu": "yes"}}, {"version": "2026.11"}),
    ],
)
def test_only_allowed_short_options_are_recorded(sent, recorded):
    assert recordable_request(sent) == recorded


def test_timeout_message_quotes_the_last_scheduler_warning():
    events = [
        {"type": "Normal", "message": "Pulling image"},
        {"type": "Warning", "message": "0/4 nodes are available: 2 Insufficient nvidia.com/gpu."},
        {"type": "Warning", "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."},
    ]
    assert timeout_message(300, events) == (
        "Your server did not start within 300 seconds. The scheduler reports: 0/4 nodes are "
        "available: 4 Insufficient nvidia.com/gpu. Try a smaller profile or another region, "
        "or try again later."
    )
    assert timeout_message(60, events[:1]) == (
        "Your server did not start within 60 seconds. Try a smaller profile or another "
        "region, or try again later."
    )


def test_timeout_message_names_a_server_that_never_answered_its_readiness_probe():
    events = [
        {"type": "Warning", "reason": "FailedScheduling", "message": "0/4 nodes are available"},
        {"type": "Normal", "reason": "Started", "message": "Started container notebook"},
        {"type": "Warning", "reason": "Unhealthy", "message": "Readiness probe failed: refused"},
    ]
    assert timeout_message(30, events) == (
        "Your server did not start within 30 seconds. Its pod runs, but the server never "
        "answered its readiness probe (Readiness probe failed: refused). Its log says why; "
        "a busy node may need a longer start_timeout."
    )
    pull = [{"type": "Warning", "reason": "Failed", "message": "ErrImagePull"}]
    assert "Kubernetes reports: ErrImagePull" in timeout_message(30, pull)
