"""The home page's server cards (sovereign_hub.pages.status), built from state and policy."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from jupyterhub import orm
from jupyterhub.spawner import Spawner

from sovereign_hub.pages.status import PinRow, ServerCard, server_card, spawner_facts
from sovereign_hub.policy import Pin
from sovereign_hub.spawner.state import (
    STATE_KEY,
    Allocation,
    outlook_entry,
    read_state,
    state_entry,
)
from tests.policies import D1, D2, D3, DG, TEXT, policy

NOW = datetime(2026, 6, 1, tzinfo=UTC)
P = policy()


def pin(channel: str, version: str, image: str, days_ago: int) -> Pin:
    return Pin(channel, version, image, NOW - timedelta(days=days_ago))


GPU = Allocation(
    profile="gpu2",
    region="eu",
    channel="torch",
    image=DG,
    image_version="1",
    gpus=2,
    gpu_type="a100",
    quota_group="eu-research",
    node="eu-gpu-1",
)


def test_a_running_gpu_server_shows_what_it_runs_where_and_since_when():
    pins = {"torch": pin("torch", "1", DG, 3), "ds": pin("ds", "2", D2, 3)}
    card = server_card("", True, pins, GPU, P, NOW)
    assert card == ServerCard(
        name="",
        running=True,
        profile="Two GPUs",
        region="EU",
        gpus="2 × A100",
        node="eu-gpu-1",
        pins=(
            PinRow(
                channel="Torch",
                version="1",
                digest_short="sha256:999999999999",
                pinned_since="2026-05-29",
                upgrade_to=None,
                notice=None,
                urgent=False,
                key="torch",
            ),
        ),
        upgrade_url=None,
    )


def test_a_running_servers_card_shows_the_upgrade_chosen_for_its_next_start():
    running = Allocation(profile="cpu", region="eu", channel="ds", image=D2, image_version="2")
    pins = {"ds": pin("ds", "2", D2, 3)}
    row = server_card("", True, pins, running, P, NOW, chosen={"ds": "3"}).pins[0]
    assert (row.key, row.upgrade_to, row.chosen) == ("ds", "3", "3")
    # A choice the policy no longer offers is not shown as if it would apply.
    assert server_card("", True, pins, running, P, NOW, chosen={"ds": "1"}).pins[0].chosen is None


def test_a_stopped_server_offers_the_newest_version_at_the_next_start():
    card = server_card(
        "",
        False,
        {"ds": pin("ds", "2", D2, 3)},
        None,
        P,
        NOW,
        spawn_url="/hub/spawn/ana",
        last_options={"profile": "cpu", "region": "eu"},
    )
    assert card.pins[0].upgrade_to == "3"
    assert card.upgrade_url == "/hub/spawn/ana?profile=cpu&version-cpu=3&region-cpu=eu"
    assert (card.profile, card.gpus, card.node) == (None, None, None)


def test_an_expiring_pin_is_announced_with_its_date_two_weeks_ahead():
    early = server_card("", False, {"ds": pin("ds", "3", D3, 10)}, None, P, NOW)
    assert early.pins[0].notice is None
    soon = server_card("", False, {"ds": pin("ds", "3", D3, 20)}, None, P, NOW)
    assert soon.pins[0].notice == (
        "Your pin expires on 2026-06-11; the first start after that moves to version 3."
    )
    assert not soon.pins[0].urgent


def test_an_expired_or_revoked_pin_says_the_next_start_moves_it():
    expired = server_card("", False, {"ds": pin("ds", "2", D2, 31)}, None, P, NOW).pins[0]
    assert expired.notice == (
        "Your pin expired on 2026-05-31 (30 days): your next start moves to version 3."
    )
    assert expired.urgent
    assert expired.upgrade_to is None  # the move is not a choice
    revoked_policy = policy(
        TEXT.replace(
            f'image: "{D1}", released: 2026-01-01}}',
            f'image: "{D1}", released: 2026-01-01, revoked: "CVE-2026-42 in libfoo"}}',
        )
    )
    revoked = server_card("", False, {"ds": pin("ds", "1", D1, 1)}, None, revoked_policy, NOW)
    assert revoked.pins[0].notice == (
        "Version 1 was revoked (CVE-2026-42 in libfoo): your next start moves to version 3."
    )


def test_the_rest_api_outlook_says_what_the_card_says_in_json():
    """``state.sovereign.outlook``: newer versions, the expiry date and a coming forced move."""
    pins = {
        "ds": pin("ds", "2", D2, 20),
        "torch": pin("torch", "1", DG, 400),
        "gone": pin("gone", "1", D1, 1),
    }
    outlook = outlook_entry(pins, P, NOW)
    assert set(outlook) == {"ds", "torch"}  # a channel the policy no longer has says nothing
    assert outlook["ds"] == {
        "newer": [{"version": "3", "image": D3, "released": "2026-03-01"}],
        "expiresOn": "2026-06-11",
        "moveAtNextStart": None,
        "moveTo": None,
        "revokedBecause": None,
    }
    assert outlook["torch"]["expiresOn"] is None  # no maxPinAgeDays: kept until upgraded
    expired = outlook_entry({"ds": pin("ds", "1", D1, 31)}, P, NOW)["ds"]
    assert (expired["moveAtNextStart"], expired["moveTo"]) == ("expired", "3")
    assert [v["version"] for v in expired["newer"]] == ["2", "3"]


def test_the_outlook_is_not_read_back_from_the_database():
    """A stored copy goes stale with the date and the policy: reading the state ignores it."""
    entry = state_entry({"ds": pin("ds", "2", D2, 20)}, None)
    entry["outlook"] = {"ds": {"moveAtNextStart": "expired"}}
    pins, allocation = read_state({STATE_KEY: entry}, logging.getLogger("t"), "ana")
    assert pins == {"ds": pin("ds", "2", D2, 20)}
    assert allocation is None


def test_the_share_panel_lists_active_shares_with_their_end_and_only_for_who_may_share():
    from types import SimpleNamespace

    from sovereign_hub.pages.status import SharePanel, ShareRow, share_panel
    from sovereign_hub.policy import load_policy
    from tests.conftest import ROOT

    example = load_policy(ROOT / "examples" / "policy.yaml").policy  # sharing: 480 minutes
    made = datetime(2026, 6, 1, 9, 30)  # naive UTC, as JupyterHub stores it
    shares = [
        SimpleNamespace(user=SimpleNamespace(name="carla"), group=None, created_at=made),
        SimpleNamespace(user=None, group=SimpleNamespace(name="eu-researchers"), created_at=made),
    ]
    api = "/hub/api/shares/ana/"
    # carla's share was made for one hour: the earlier of that and the policy's 480 minutes.
    chosen = {"carla": datetime(2026, 6, 1, 10, 30)}
    panel = share_panel(
        example,
        ("eu-researchers",),
        "eu",
        shares,
        api,
        lambda share: chosen.get(share.user.name) if share.user else None,
    )
    assert panel == SharePanel(
        api,
        480,
        (
            ShareRow("group", "eu-researchers", "2026-06-01 17:30 UTC"),
            ShareRow("user", "carla", "2026-06-01 10:30 UTC"),
        ),
        ((60, "1 hour"), (240, "4 hours"), (480, "480 minutes (the longest allowed)")),
    )
    # No form where the policy would refuse any share: a stopped server, an owner who may not.
    assert share_panel(example, ("eu-researchers",), None, shares, api) is None
    assert share_panel(example, ("us-analysts",), "us", [], api) is None


def test_a_live_spawner_of_another_class_is_read_from_its_row():
    """The home page of a hub running stock KubeSpawner (bench_scale's baseline) answered
    500 ("'KubeSpawner' object has no attribute 'state'"): a live spawner without pins was
    read as if it were a database row."""
    entry = state_entry({"ds": pin("ds", "2", D2, 20)}, None)
    live = Spawner(orm_spawner=orm.Spawner(name="", state={STATE_KEY: entry}))
    user = type("U", (), {"name": "ana"})()
    pins, allocation, running, chosen = spawner_facts(user, live)
    assert pins == {"ds": pin("ds", "2", D2, 20)}
    assert (allocation, running, chosen) == (None, False, {})
