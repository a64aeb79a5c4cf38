""" "Upgrade at next start": the choice checked when made and again when it applies."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from sovereign_hub.policy import Pin, SpawnRequest, upgrade_refusal
from sovereign_hub.spawner.upgrades import NextStartUpgrade, UpgradeRefused
from tests.policies import D1, D2, D3, TEXT, policy

NOW = datetime(2026, 6, 1, tzinfo=UTC)
P = policy()


class Server(NextStartUpgrade):
    log = logging.getLogger("test")

    def __init__(self, **pins: Pin) -> None:
        self.pins = dict(pins)


def pinned(version: str, image: str, days_ago: int = 1) -> Pin:
    return Pin("ds", version, image, NOW - timedelta(days=days_ago))


def test_only_a_newer_offered_version_can_be_chosen():
    channel = P.channels["ds"]
    assert upgrade_refusal(channel, pinned("1", D1), "3", NOW) is None
    assert upgrade_refusal(channel, pinned("2", D2), "1", NOW) == (
        "Version '1' of Data science is not on offer above your version 2; "
        "the newer versions are 3."
    )
    assert upgrade_refusal(channel, pinned("3", D3), "3", NOW) == (
        "No version of Data science newer than 3 is on offer."
    )
    # A forced move is coming: it decides the next start, not a choice.
    assert upgrade_refusal(channel, pinned("1", D1, days_ago=40), "2", NOW) == (
        "Your next start already moves Data science to version 3 (your version 1 is expired)."
    )


def test_the_choice_is_stored_withdrawn_and_refused_with_the_reason():
    server = Server(ds=pinned("1", D1))
    server.choose_upgrade("ds", "2", P, NOW)
    assert server.upgrade_state() == {"ds": "2"}
    with pytest.raises(UpgradeRefused, match="no pinned image in channel 'torch'"):
        server.choose_upgrade("torch", "1", P, NOW)
    with pytest.raises(UpgradeRefused, match="not on offer"):
        server.choose_upgrade("ds", "9", P, NOW)
    assert server.upgrade_state() == {"ds": "2"}  # a refused choice leaves the last one
    server.choose_upgrade("ds", None, P, NOW)
    assert server.upgrade_state() == {}


def test_the_next_start_takes_the_choice_unless_it_names_a_version():
    server = Server(ds=pinned("1", D1))
    server.choose_upgrade("ds", "2", P, NOW)
    request, notice = server.with_upgrade_choice(SpawnRequest("cpu", NOW), P)
    assert (request.version, notice) == ("2", None)
    named = SpawnRequest("cpu", NOW, version="3")
    assert server.with_upgrade_choice(named, P) == (named, None)
    # The spawn form's default sends the pinned version ("stay"): the stored choice applies.
    staying, _ = server.with_upgrade_choice(SpawnRequest("cpu", NOW, version="1"), P)
    assert staying.version == "2"
    other = SpawnRequest("gpu2", NOW)  # another channel: the choice is not this one's
    assert server.with_upgrade_choice(other, P) == (other, None)
    server.upgrade_pinned("ds")
    assert server.upgrade_state() == {}


def test_a_choice_revoked_before_the_start_is_dropped_with_a_notice():
    server = Server(ds=pinned("1", D1))
    server.choose_upgrade("ds", "2", P, NOW)
    revoked = policy(
        TEXT.replace(
            f'image: "{D2}", released: 2026-02-01}}',
            f'image: "{D2}", released: 2026-02-01, revoked: "CVE-2026-9"}}',
        )
    )
    request, notice = server.with_upgrade_choice(SpawnRequest("cpu", NOW), revoked)
    assert request.version is None  # the decision keeps or moves the pin by its own rules
    assert notice == (
        "Your chosen upgrade to version 2 was not applied: Version '2' of Data science is not "
        "on offer above your version 1; the newer versions are 3."
    )
    assert server.upgrade_state() == {}


def test_a_stored_choice_that_cannot_be_read_is_dropped(caplog):
    server = Server()
    server.load_upgrade_state({"ds": "2", "torch": 7})
    assert server.upgrade_state() == {"ds": "2"}
    assert "ignoring an unreadable upgrade choice 'torch'" in caplog.text
    server.load_upgrade_state(None)
    assert server.upgrade_state() == {}
