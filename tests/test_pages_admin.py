"""The admin section's rows (sovereign_hub.pages.admin), from state, ledger and policy."""

from __future__ import annotations

from datetime import UTC, datetime

from sovereign_hub.pages.admin import AdminRow, LedgerRow, admin_row, ledger_rows
from sovereign_hub.policy import Pin, Usage
from sovereign_hub.spawner.state import Allocation
from tests.policies import D2, DG, policy

P = policy()
WHEN = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def test_the_ledger_lists_every_group_with_a_quota_or_a_hold():
    usage = Usage({"eu-research": {"ana": 2, "ada": 1}, "retired-group": {"old": 1}})
    assert ledger_rows(usage, P) == [
        LedgerRow("eu-research", quota=4, held=3, holders="ada: 1, ana: 2"),
        LedgerRow("gpu-pool", quota=8, held=0, holders=""),
        LedgerRow("retired-group", quota=0, held=1, holders="old: 1"),
    ]


def test_a_running_server_shows_its_allocation_and_a_stopped_one_only_its_pins():
    pins = {"torch": Pin("torch", "1", DG, WHEN), "ds": Pin("ds", "2", D2, WHEN)}
    allocation = Allocation(
        profile="gpu2", region="eu", channel="torch", image=DG, image_version="1",
        gpus=2, gpu_type="a100", quota_group="eu-research", node="eu-gpu-1",
    )  # fmt: skip
    pinned = ("ds 2 (since 2026-11-02)", "torch 1 (since 2026-11-02)")
    assert admin_row("ana", "", True, pins, allocation) == AdminRow(
        "ana", "", True, "gpu2", "eu", 2, "eu-research", "eu-gpu-1", pinned
    )
    assert admin_row("ana", "", False, pins, allocation) == AdminRow(
        "ana", "", False, "", "", 0, "", "", pinned
    )
