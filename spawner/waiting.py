"""The hub's GPU waiting room: GPU spawns wait their fair turn instead of being refused.

One :class:`WaitingRoom` per hub process (like the quota ledger). It owns the
pure :class:`~.fairqueue.FairQueue`, and for each waiting spawn a future the
spawner awaits. An admission pass offers waiters, in fair order, to the
policy decision (quota, through the ledger) and to the free GPUs seen on the
nodes (capacity, :mod:`.capacity`); the pass runs with no ``await`` inside,
so two waiters never get the same GPU. Passes run when a spawn joins, when a
server stops, and every ``interval`` seconds while anyone waits (pods can end
and nodes can join without the hub being told).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sovereign_hub.policy import (
    Allowed,
    Decision,
    Denied,
    Identity,
    PodPlan,
    Policy,
    Reason,
    SpawnRequest,
    Usage,
    decide,
)

from .capacity import Need, NodeGpus, coming_gpus, free_gpus, slots, take
from .fairqueue import AlreadyQueued, Blocked, FairQueue, Key, Place, Pool, Waiter, estimated_wait
from .quota import GpuLedger

__all__ = ["AlreadyQueued", "QueueEnded", "Ticket", "WaitingRoom"]

WAIT_SECONDS = Histogram(
    "sovereign_gpu_queue_wait_seconds",
    "Time GPU spawns spent in the queue, by how the wait ended (admitted, cancelled, timeout).",
    ["gpu_type", "region", "outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, float("inf")),
)

_ROOMS: weakref.WeakSet[WaitingRoom] = weakref.WeakSet()


class QueueCollector(Collector):
    """Queue length and the oldest wait per pool, read from the rooms when Prometheus scrapes."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        length = GaugeMetricFamily(
            "sovereign_gpu_queue_length",
            "GPU spawns waiting, by GPU type and region.",
            labels=["gpu_type", "region"],
        )
        oldest = GaugeMetricFamily(
            "sovereign_gpu_queue_oldest_wait_seconds",
            "How long the longest-waiting GPU spawn has waited, by GPU type and region.",
            labels=["gpu_type", "region"],
        )
        now = time.time()
        pools: dict[Pool, list[Waiter]] = {}
        for room in list(_ROOMS):
            for waiter in room.queue.waiters():
                pools.setdefault(waiter.pool, []).append(waiter)
        for pool, waiters in sorted(pools.items()):
            length.add_metric([pool.gpu_type, pool.region], len(waiters))
            oldest.add_metric([pool.gpu_type, pool.region], now - min(w.since for w in waiters))
        yield length
        yield oldest


REGISTRY.register(QueueCollector())

NodeLister = Callable[[], Awaitable[list[dict[str, Any]]]]
PodSource = Callable[[], Iterable[Mapping[str, Any]]]


class QueueEnded(Exception):
    """A queued spawn that ended without a GPU: ``reason`` is cancelled or max_wait."""


@dataclass(slots=True)
class Ticket:
    """A waiting spawn's side of the room: what to decide with and where to put the answer."""

    identity: Identity
    request: SpawnRequest
    policy: Policy
    future: asyncio.Future[Decision] = field(default_factory=asyncio.Future)
    blocked: str = "waiters_ahead"
    """Why the last pass did not admit it: quota, capacity or waiters_ahead."""


def need_of(plan: PodPlan, policy: Policy) -> Need:
    """The GPUs a plan needs, in the nodes' terms."""
    gpu = plan.gpu
    assert gpu is not None  # noqa: S101 - only GPU plans queue
    return Need(gpu.resource, gpu.count, policy.regions[plan.region].node_regions, gpu.product)


def own_usage(usage: Usage, user: str) -> Usage:
    """``usage`` with every other user's GPUs left out: what the user could get if others left."""
    return Usage({g: {user: n.get(user, 0)} for g, n in usage.gpus.items()})


class WaitingRoom:
    """Queued GPU spawns of one hub and the passes that admit them."""

    def __init__(self, ledger: GpuLedger, interval: float = 2.0, node_ttl: float = 2.0) -> None:
        self.ledger = ledger
        _ROOMS.add(self)
        self.log = logging.getLogger("sovereign_hub.gpuqueue")
        self.interval = interval
        self.node_ttl = node_ttl
        self.queue = FairQueue()
        self.tickets: dict[Key, Ticket] = {}
        self.inflight: dict[Key, Need] = {}
        """Admitted spawns whose pods the reflector may not show yet."""
        self.hold_seconds: dict[Pool, float] = {}
        """Average time a GPU server of each pool ran (exponentially weighted)."""
        self.list_nodes: NodeLister | None = None
        self.pods: PodSource = lambda: ()
        self.outage: Callable[[str], str | None] = lambda cluster: None
        """Why the GPUs of a cluster cannot be judged now (its view is too old), by cluster
        name; GPU spawns for its regions wait meanwhile. None: they can."""
        self.node_start_seconds = 300.0
        """How long a new GPU node takes to become Ready, for the estimate (see
        :func:`.capacity.coming_gpus`)."""
        self.user_priority: int | None = None
        """The user pods' priority if they may preempt (placeholders' GPUs then count as
        free); None: no pod is taken for preemptible."""
        self._nodes: list[dict[str, Any]] = []
        self._nodes_at = 0.0
        self._nodes_known = False
        """Whether a node list ever arrived: without one (no RBAC to list nodes), only quota
        decides, and the scheduler judges capacity as it did before the queue."""
        self._pump: asyncio.Task[None] | None = None
        self._listing: asyncio.Future[None] | None = None
        """The node listing in flight, which every pass that finds the nodes stale awaits."""
        self._warned = False
        self.restored = False
        """Whether the places saved before a hub restart were put back."""
        self._passes: set[asyncio.Future[list[Waiter]]] = set()
        self._last_policy: Policy | None = None

    # -- what the spawner calls ------------------------------------------------
    def join(
        self, key: Key, identity: Identity, request: SpawnRequest, policy: Policy
    ) -> Decision | Ticket:
        """Decide ``request`` now, or queue it and return its :class:`Ticket`.

        A Decision comes back when the profile has no GPU, the queue is off, or
        waiting would not help (the refusal does not depend on other users'
        GPUs, e.g. a per-user limit). Raises :class:`AlreadyQueued` when the user
        already waits for another server, and returns a denial when the pool's
        queue is full.
        """
        profile = policy.profiles.get(request.profile)
        if profile is None or profile.gpu is None or not policy.gpu_queue.enabled:
            return self.ledger.decide_and_hold(key, identity, request, policy)
        self.ledger.release(key)
        alone = decide(identity, request, policy, own_usage(self.ledger.usage(), identity.username))
        if not isinstance(alone, Allowed):
            return alone
        plan = alone.plan
        assert plan.gpu is not None  # noqa: S101 - a GPU profile's plan has GPUs
        pool = Pool(plan.gpu.type, plan.region)
        waiting = sum(1 for w in self.queue.waiters() if w.pool == pool and w.key != key)
        if waiting >= policy.gpu_queue.max_queued_per_pool:
            return Denied(
                (
                    Reason(
                        "gpu_queue_full",
                        f"{waiting} spawns already wait for {plan.gpu.type} GPUs in "
                        f"{plan.region}, the most the hub queues. Try again later.",
                    ),
                )
            )
        self._weigh(policy)
        waiter = self.queue.add(
            Waiter(
                user=identity.username,
                server=key[1],
                pool=pool,
                group=plan.gpu.quota_group,
                gpus=plan.gpu.count,
                since=time.time(),
                profile=request.profile,
            )
        )
        ticket = Ticket(identity, request, policy)
        self.tickets[waiter.key] = ticket
        return ticket

    def leave(self, key: Key) -> Waiter | None:
        """Take a waiting spawn out (cancelled or timed out)."""
        self.tickets.pop(key, None)
        gone = self.queue.remove(key)
        if gone is not None:
            self._poke()
        return gone

    def started(self, key: Key) -> None:
        """The admitted spawn's pod is running (or the spawn ended): the reflector counts it."""
        self.inflight.pop(key, None)

    def released(self, key: Key, pool: Pool | None, ran_seconds: float) -> None:
        """A GPU server stopped after ``ran_seconds``: learn the pool's hold time, admit others."""
        self.inflight.pop(key, None)
        if pool is not None and ran_seconds > 0:
            before = self.hold_seconds.get(pool)
            self.hold_seconds[pool] = (
                ran_seconds if before is None else 0.8 * before + 0.2 * ran_seconds
            )
        self._poke()

    def restore(self, waiter: Waiter, clock: Mapping[str, Any], max_wait: float) -> None:
        """Give a waiter saved before a hub restart its place back until it returns or expires."""
        if time.time() - waiter.since < max_wait:
            self.queue.restore(clock, [waiter])

    def place(self, key: Key) -> Place | None:
        return self.queue.place(key)

    def estimate(self, key: Key) -> float | None:
        """Seconds the waiter ``key`` is likely to wait still; None when unknown."""
        waiter, place = self.queue.get(key), self.queue.place(key)
        ticket = self.tickets.get(key)
        if waiter is None or place is None or ticket is None:
            return None
        policy = ticket.policy
        hold = self.hold_seconds.get(waiter.pool, policy.gpu_queue.expected_session_minutes * 60)
        gpu_type = policy.gpu_types.get(waiter.pool.gpu_type)
        region = policy.regions.get(waiter.pool.region)
        if gpu_type is None or region is None:
            return None
        need = Need(gpu_type.resource, waiter.gpus, region.node_regions, gpu_type.product)
        serving = slots(self._free(policy), need)
        coming: list[tuple[int, float]] = []
        if ticket.blocked == "quota":  # a new node does not lift a quota
            quota = policy.groups[waiter.group].gpu_quota if waiter.group in policy.groups else 0
            serving = min(serving, quota) if serving else quota
        else:
            sched = policy.scheduling
            coming = coming_gpus(
                self._nodes,
                need,
                region_label=sched.region_label,
                product_label=sched.gpu_product_label,
                tolerated_taints=frozenset(t.key for t in sched.gpu_taints),
                start_seconds=self.node_start_seconds,
                now=time.time(),
            )
        wait = estimated_wait(place, serving, hold, coming)
        return None if wait == float("inf") else wait

    async def wait(self, key: Key, ticket: Ticket, max_wait: float) -> Decision:
        """Run a pass, then wait for the ticket's decision, at most ``max_wait`` seconds.

        Raises :class:`QueueEnded` on timeout; on cancellation the waiter leaves.
        """
        try:
            # The pass lists nodes through the API: a cancel there leaves the queue too.
            await self.run_pass()
            if not ticket.future.done():
                self._ensure_pump()
            # asyncio.timeout: on 3.11 wait_for can return the decision and swallow a cancel
            # that arrives with it, so a user who left the queue would still be started.
            async with asyncio.timeout(max_wait):
                return await asyncio.shield(ticket.future)
        except TimeoutError:
            self.leave(key)
            raise QueueEnded("max_wait") from None
        except asyncio.CancelledError:
            self.leave(key)
            raise

    # -- admission ---------------------------------------------------------------
    async def run_pass(self) -> list[Waiter]:
        """Refresh the nodes if stale, then admit whoever fits, in fair order."""
        if self.list_nodes is not None and time.monotonic() - self._nodes_at > self.node_ttl:
            # One listing at a time: a burst of spawns and stops starts passes while a
            # listing is answered, and each would otherwise list every node again (555
            # node lists in one 1,000-spawn run, and their parsing on the hub's loop).
            if self._listing is None or self._listing.done():
                self._listing = asyncio.ensure_future(self._refresh_nodes(self.list_nodes))
            # Shielded: a waiter who leaves does not cancel the others' listing.
            await asyncio.shield(self._listing)
        return self.admit_waiting()

    async def _refresh_nodes(self, list_nodes: NodeLister) -> None:
        try:
            self._nodes = await list_nodes()
            self._nodes_at = time.monotonic()
            self._nodes_known = True
            self._warned = False  # the next failure is a new outage
        except Exception as exc:  # keep the last view; the next pass retries
            log = self.log.debug if self._warned else self.log.warning
            self._warned = True
            log("listing nodes for the GPU queue failed (the last list is kept): %s", exc)

    def admit_waiting(self) -> list[Waiter]:
        """One admission pass on the nodes last listed (no await: atomic on the loop)."""
        policy = self._last_policy
        for key, waiter in list((w.key, w) for w in self.queue.waiters()):
            if key not in self.tickets and time.time() - waiter.since > self._max_wait(policy):
                self.queue.remove(key)  # a place kept over a restart whose owner never came back
        views: dict[int, list[NodeGpus]] = {}

        def try_admit(waiter: Waiter) -> Blocked | None:
            ticket = self.tickets.get(waiter.key)
            if ticket is None:
                return "absent"
            if ticket.future.done():
                return None
            policy = ticket.policy
            decision = self.ledger.decide_and_hold(
                waiter.key, ticket.identity, ticket.request, policy
            )
            if not isinstance(decision, Allowed):
                alone = own_usage(self.ledger.usage(), waiter.user)
                if decide(ticket.identity, ticket.request, policy, alone).allowed:
                    return "quota"
                ticket.future.set_result(decision)  # no longer a matter of waiting
                return None
            need = need_of(decision.plan, policy)
            if self.outage(policy.regions[decision.plan.region].cluster_name):
                self.ledger.release(waiter.key)  # its free GPUs are unknown: wait, not guess
                return "capacity"
            nodes = views.setdefault(id(policy), self._free(policy))
            # No node of the kind at all (scale-from-zero, or a typo in the policy): the
            # queue cannot tell when one comes, so the scheduler judges, as without a queue.
            if self._nodes_known and slots(nodes, need) and take(nodes, need) is None:
                self.ledger.release(waiter.key)
                return "capacity"
            self.inflight[waiter.key] = need
            ticket.future.set_result(decision)
            return None

        def waits(waiter: Waiter, why: Blocked) -> None:
            ticket = self.tickets.get(waiter.key)
            if ticket is not None and why != "absent":
                ticket.blocked = why

        admitted = self.queue.admit(try_admit, waits)
        for waiter in admitted:
            self.tickets.pop(waiter.key, None)
        return admitted

    def _free(self, policy: Policy) -> list[NodeGpus]:
        sched = policy.scheduling
        return free_gpus(
            self._nodes,
            self.pods(),
            region_label=sched.region_label,
            product_label=sched.gpu_product_label,
            tolerated_taints=frozenset(t.key for t in sched.gpu_taints),
            pending=list(self.inflight.values()),
            preemptible_below=self.user_priority,
        )

    def _weigh(self, policy: Policy) -> None:
        self._last_policy = policy
        self.queue.weights = {name: g.gpu_quota for name, g in policy.groups.items()}

    @staticmethod
    def _max_wait(policy: Policy | None) -> float:
        return (policy.gpu_queue.max_wait_minutes if policy else 60) * 60.0

    def _poke(self) -> None:
        # Someone left or a GPU was freed: admit at once rather than at the next tick.
        if len(self.queue):
            self._passes.add(asyncio.ensure_future(self.run_pass()))
            self._passes = {p for p in self._passes if not p.done()}

    def _ensure_pump(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.ensure_future(self._run_pump())

    async def _run_pump(self) -> None:
        while len(self.queue):
            await asyncio.sleep(self.interval)
            await self.run_pass()
