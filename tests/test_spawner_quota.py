"""The GPU ledger: decide and hold atomically, release, rebuild."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sovereign_hub.policy import Identity, SpawnRequest, load_policy
from sovereign_hub.spawner.quota import GpuLedger
from tests.conftest import ROOT

POLICY = load_policy(ROOT / "examples" / "policy.yaml").policy  # eu-researchers: 4 GPUs, 2 per user
NOW = datetime(2026, 11, 26, tzinfo=UTC)


def researcher(name: str) -> Identity:
    return Identity(name, frozenset({"eu-researchers"}))


async def test_concurrent_spawns_never_exceed_the_quota():
    ledger = GpuLedger()

    async def spawn(i: int):
        await asyncio.sleep(0)  # interleave as the hub's event loop would
        return ledger.decide_and_hold(
            (f"u{i}", ""), researcher(f"u{i}"), SpawnRequest("gpu-a100", NOW), POLICY
        )

    decisions = await asyncio.gather(*(spawn(i) for i in range(20)))
    admitted = [d for d in decisions if d.allowed]
    refused = [d for d in decisions if not d.allowed]
    assert len(admitted) == 4
    assert ledger.usage().group_total("eu-researchers") == 4
    assert all("group 'eu-researchers' holds 4 of its 4-GPU quota" in d.message for d in refused)


def test_release_and_restart_of_the_same_server():
    ledger = GpuLedger()
    key = ("ana", "")
    assert ledger.decide_and_hold(
        key, researcher("ana"), SpawnRequest("gpu-a100", NOW), POLICY
    ).allowed
    # Starting the same server again replaces its hold rather than adding to it.
    assert ledger.decide_and_hold(
        key, researcher("ana"), SpawnRequest("gpu-a100", NOW), POLICY
    ).allowed
    assert ledger.usage().held_by("eu-researchers", "ana") == 1
    ledger.release(key)
    assert ledger.usage().group_total("eu-researchers") == 0


def test_holds_rebuilt_after_restart_count_against_the_quota():
    ledger = GpuLedger()
    for i in range(4):
        ledger.hold((f"u{i}", ""), "eu-researchers", 1)
    decision = ledger.decide_and_hold(
        ("ana", ""), researcher("ana"), SpawnRequest("gpu-a100", NOW), POLICY
    )
    assert not decision.allowed
    assert "(u0: 1, u1: 1, u2: 1, u3: 1)" in decision.message


def test_the_metrics_show_each_groups_holds_holders_and_quota():
    from sovereign_hub.spawner.quotametrics import LedgerCollector

    ledger = GpuLedger()
    collector = LedgerCollector([ledger])

    def samples() -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels["quota_group"]): s.value
            for family in collector.collect()
            for s in family.samples
        }

    assert samples() == {}  # nothing decided yet: no holds, no quota known
    keys = [("ana", ""), ("ana", "gpu"), ("ben", "")]
    for key in keys:
        decision = ledger.decide_and_hold(
            key, researcher(key[0]), SpawnRequest("gpu-a100", NOW), POLICY
        )
        assert decision.allowed
    assert samples() == {
        ("sovereign_gpu_held", "eu-researchers"): 3,
        ("sovereign_gpu_holders", "eu-researchers"): 2,
        ("sovereign_gpu_quota", "eu-researchers"): 4,
    }
    for key in keys:
        ledger.release(key)
    # A group with a quota and nothing held shows 0, so "held / quota" stays defined.
    assert samples()[("sovereign_gpu_held", "eu-researchers")] == 0
    assert samples()[("sovereign_gpu_holders", "eu-researchers")] == 0
