"""The waiting room: queue instead of refusal, fair admission, cancel, max wait.

The room decides with the real policy and quota ledger; nodes are given as
Node objects (the hub-level test runs the same against the emulated cluster).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from sovereign_hub.policy import Allowed, Identity, SpawnRequest, load_policy
from sovereign_hub.spawner.fairqueue import AlreadyQueued
from sovereign_hub.spawner.quota import GpuLedger
from sovereign_hub.spawner.waiting import QueueEnded, Ticket, WaitingRoom
from tests.conftest import ROOT
from tests.test_spawner_capacity import node

POLICY = load_policy(ROOT / "examples" / "policy.yaml").policy  # eu-researchers: 4 GPUs, 2/user
NOW = datetime(2026, 11, 29, tzinfo=UTC)


def researcher(name: str) -> Identity:
    return Identity(name, frozenset({"eu-researchers"}))


def request(profile: str = "gpu-a100") -> SpawnRequest:
    return SpawnRequest(profile, NOW)


async def test_twenty_users_wait_for_a_four_gpu_quota_in_arrival_order():
    room = WaitingRoom(GpuLedger(), interval=0.05)
    tickets = {}
    for i in range(20):
        joined = room.join((f"u{i:02}", ""), researcher(f"u{i:02}"), request(), POLICY)
        assert isinstance(joined, Ticket)
        tickets[f"u{i:02}"] = joined
    await room.run_pass()
    running = sorted(u for u, t in tickets.items() if t.future.done())
    assert running == ["u00", "u01", "u02", "u03"]
    assert room.place(("u04", "")).position == 1
    assert room.place(("u19", "")).of == 16
    assert tickets["u04"].blocked == "quota"
    admitted_order = list(running)
    while len(admitted_order) < 20:
        # The oldest running server stops: the next in line gets its GPU.
        room.ledger.release((admitted_order[len(admitted_order) - 4], ""))
        await room.run_pass()
        newly = sorted(u for u, t in tickets.items() if t.future.done() and u not in admitted_order)
        assert len(newly) == 1
        admitted_order += newly
    assert admitted_order == sorted(tickets)
    assert all(isinstance(t.future.result(), Allowed) for t in tickets.values())


async def one_admitted_one_waits(room: WaitingRoom, nodes: list) -> Ticket:
    """a and b want an A100 on ``nodes`` with one free: a is admitted, b waits for capacity."""

    async def list_nodes():
        return nodes

    room.list_nodes = list_nodes
    first = room.join(("a", ""), researcher("a"), request(), POLICY)
    second = room.join(("b", ""), researcher("b"), request(), POLICY)
    await room.run_pass()
    assert first.future.done()
    assert not second.future.done()
    assert second.blocked == "capacity"
    return second


async def test_capacity_case_waits_for_a_free_node_gpu():
    room = WaitingRoom(GpuLedger(), interval=0.05, node_ttl=0)
    nodes = [node("eu-gpu-1", gpus="1")]
    second = await one_admitted_one_waits(room, nodes)
    # The quota (4) has room: only the node is full. A second node joins the cluster.
    nodes.append(node("eu-gpu-2", gpus="1"))
    await room.run_pass()
    assert second.future.done()


async def test_a_user_waits_once_and_per_user_limits_are_not_queued():
    room = WaitingRoom(GpuLedger())
    room.join(("ana", ""), researcher("ana"), request(), POLICY)
    with pytest.raises(AlreadyQueued):
        room.join(("ana", "second"), researcher("ana"), request(), POLICY)
    # Holding 2 of her 2-GPU limit, waiting would not help: refused at once.
    room.ledger.hold(("bob", "one"), "eu-researchers", 2)
    decision = room.join(("bob", "two"), researcher("bob"), request(), POLICY)
    assert not isinstance(decision, Ticket)
    assert not decision.allowed
    assert "you hold 2 of your 2-GPU limit" in decision.message


async def test_cancel_and_max_wait_leave_the_queue():
    room = WaitingRoom(GpuLedger(), interval=0.05)
    for i in range(4):
        room.ledger.hold((f"h{i}", ""), "eu-researchers", 1)
    waiting = room.join(("ana", ""), researcher("ana"), request(), POLICY)
    behind = room.join(("bob", ""), researcher("bob"), request(), POLICY)
    with pytest.raises(QueueEnded):
        await room.wait(("ana", ""), waiting, max_wait=0.2)
    assert ("ana", "") not in room.queue
    assert room.place(("bob", "")).position == 1
    task = asyncio.ensure_future(room.wait(("bob", ""), behind, max_wait=30))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(room.queue) == 0


async def test_restored_place_is_kept_until_its_owner_returns():
    room = WaitingRoom(GpuLedger())
    for i in range(4):
        room.ledger.hold((f"h{i}", ""), "eu-researchers", 1)
    room.join(("ana", ""), researcher("ana"), request(), POLICY)
    room.join(("bob", ""), researcher("bob"), request(), POLICY)
    saved = [w.to_state() for w in room.queue.order()]
    clock = room.queue.to_state()

    # A new hub process: places come back from the spawners' saved state.
    from sovereign_hub.spawner.fairqueue import Waiter

    again = WaitingRoom(GpuLedger())
    for state in reversed(saved):
        again.restore(Waiter.from_state(state), clock, max_wait=3600)
    carol = again.join(("carol", ""), researcher("carol"), request(), POLICY)
    assert isinstance(carol, Ticket)
    assert again.place(("carol", "")).position == 3
    bob = again.join(("bob", ""), researcher("bob"), request(), POLICY)
    assert isinstance(bob, Ticket)
    assert again.place(("bob", "")).position == 2
    # Ana has not come back: her place does not hold up bob and carol.
    await again.run_pass()
    assert bob.future.done()
    assert carol.future.done()


async def test_a_pool_with_no_node_at_all_is_left_to_the_scheduler():
    room = WaitingRoom(GpuLedger(), node_ttl=0)

    async def list_nodes():
        return [node("eu-gpu-1", gpus="1", product="NVIDIA-H100")]

    room.list_nodes = list_nodes
    ticket = room.join(("a", ""), researcher("a"), request(), POLICY)
    await room.run_pass()
    assert ticket.future.done()  # the pod goes Pending and the scheduler explains why


async def test_metrics_show_queue_length_and_waits_per_pool():
    from prometheus_client import REGISTRY, generate_latest

    room = WaitingRoom(GpuLedger())
    for i in range(4):
        room.ledger.hold((f"h{i}", ""), "eu-researchers", 1)
    for name in ("m-ana", "m-bob"):
        room.join((name, ""), researcher(name), request(), POLICY)
    text = generate_latest(REGISTRY).decode()
    assert 'sovereign_gpu_queue_length{gpu_type="a100",region="eu"}' in text
    assert room.queue.waiters()  # kept alive until here: rooms are weakly held
    length = REGISTRY.get_sample_value(
        "sovereign_gpu_queue_length", {"gpu_type": "a100", "region": "eu"}
    )
    assert length >= 2


async def test_a_wait_cancelled_while_the_nodes_are_listed_leaves_the_queue():
    """The first pass lists nodes through the API; a user who leaves then (or a hub that
    stops) must not leave a waiter behind that would later hold quota or refuse a new spawn
    as 'already queued'."""
    room = WaitingRoom(GpuLedger(), node_ttl=0)
    room.ledger.hold(("x", ""), "eu-researchers", 4)  # the quota is full: everyone waits
    listing = asyncio.Event()

    async def slow_nodes():
        listing.set()
        await asyncio.sleep(60)
        return []

    ticket = room.join(("ana", ""), researcher("ana"), request(), POLICY)
    assert isinstance(ticket, Ticket)
    room.list_nodes = slow_nodes
    waiting = asyncio.ensure_future(room.wait(("ana", ""), ticket, 300))
    await listing.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert room.place(("ana", "")) is None
    assert isinstance(room.join(("ana", ""), researcher("ana"), request(), POLICY), Ticket)


async def test_a_gpu_held_by_a_placeholder_is_free_to_a_user_who_may_preempt_it():
    room = WaitingRoom(GpuLedger(), interval=0.05, node_ttl=0)
    placeholder = _placeholder_on("eu-gpu-1")

    async def list_nodes():
        return [node("eu-gpu-1", gpus="1")]

    room.list_nodes = list_nodes
    room.pods = lambda: [placeholder]
    blocked = room.join(("a", ""), researcher("a"), request(), POLICY)
    await room.run_pass()
    assert blocked.blocked == "capacity"  # without preemption the placeholder's GPU is taken
    room.user_priority = 0
    await room.run_pass()
    assert blocked.future.done()


def _placeholder_on(node_name: str) -> dict:
    return {
        "metadata": {"name": "user-placeholder-0"},
        "spec": {
            "nodeName": node_name,
            "priority": -10,
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        },
        "status": {"phase": "Running"},
    }


async def test_a_cluster_whose_view_is_too_old_keeps_its_spawns_waiting():
    """The nodes show a free GPU, but the view of their cluster is past its age limit (the
    API server stopped answering): the waiter stays queued instead of being admitted blind,
    and is admitted once the cluster answers again."""
    room = WaitingRoom(GpuLedger(), node_ttl=0)

    async def list_nodes():
        return [node("eu-gpu-1", gpus="1")]

    room.list_nodes = list_nodes
    down = {"hub"}  # the example policy's regions run in the hub's own cluster
    room.outage = lambda cluster: "cannot reach it" if cluster in down else None
    ticket = room.join(("a", ""), researcher("a"), request(), POLICY)
    await room.run_pass()
    assert not ticket.future.done()
    assert ticket.blocked == "capacity"
    assert room.ledger.usage().gpus.get("eu-researchers", {}).get("a", 0) == 0  # quota not held
    down.clear()
    await room.run_pass()
    assert isinstance(ticket.future.result(), Allowed)


async def test_the_estimate_counts_a_gpu_node_that_is_starting():
    """One Ready A100 is taken; a second node with four has just joined and is NotReady
    (tainted node.kubernetes.io/not-ready, as every new Node is). Admission does not count
    on it, but the estimate does: about the node's start time, not a two-hour session."""
    import time

    from tests.test_spawner_capacity import NOT_READY, created

    room = WaitingRoom(GpuLedger(), node_ttl=0)
    room.node_start_seconds = 300
    starting = created(node("eu-gpu-2", gpus="4", ready=False, taints=[NOT_READY]), 0, time.time())

    await one_admitted_one_waits(room, [node("eu-gpu-1", gpus="1"), starting])
    assert 200 < room.estimate(("b", "")) <= 300  # without it: 120 minutes


async def test_passes_that_find_the_nodes_stale_together_share_one_listing():
    """A burst of spawns and stops starts many passes while the node list is being answered:
    they wait for that one listing instead of each listing every node again, and a waiter
    who leaves meanwhile does not cancel it for the others."""
    room = WaitingRoom(GpuLedger(), interval=0.05, node_ttl=0)
    listings = 0
    answer = asyncio.Event()

    async def list_nodes():
        nonlocal listings
        listings += 1
        await answer.wait()
        return [node("eu-gpu-1", gpus="1")]

    room.list_nodes = list_nodes
    ticket = room.join(("a", ""), researcher("a"), request(), POLICY)
    passes = [asyncio.ensure_future(room.run_pass()) for _ in range(20)]
    leaving = asyncio.ensure_future(room.run_pass())
    await asyncio.sleep(0.05)
    leaving.cancel()
    answer.set()
    await asyncio.gather(*passes)
    assert listings == 1
    assert ticket.future.done()
    assert isinstance(ticket.future.result(), Allowed)
    # Stale again (a TTL of 0): the next pass lists anew.
    await room.run_pass()
    assert listings == 2
