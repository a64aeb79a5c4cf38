"""What a spawner does while its GPU spawn waits in the queue (:mod:`.waiting`).

:class:`GpuQueueing` is mixed into the spawner. It joins the queue instead
of refusing, reports ``gpu_queued`` / ``gpu_admitted`` / ``gpu_abandoned``,
shows position and estimated wait on the progress page, ends a wait at the
policy's ``gpuQueue.maxWaitMinutes`` with a message, and keeps the waiter's
place in the spawner's persisted state so a hub restart does not lose it.

JupyterHub's ``start_timeout`` would otherwise kill a waiting spawn: the hub
reads it right after ``start()`` returns its future, so :meth:`queue_timeout`
lengthens it, for this spawn only, by the policy's maximum wait. The pod's own
start keeps the admin's ``start_timeout`` (the spawner times it separately).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from traitlets import Float, Integer
from traitlets.config import Configurable

from sovereign_hub.policy import (
    Decision,
    Identity,
    Policy,
    PolicyError,
    SpawnRequest,
    cached_policy,
)
from sovereign_hub.refusals import SpawnRefused
from sovereign_hub.reporting import SessionEventKind

from .clusterview import ClusterView, pods_everywhere
from .fairqueue import Pool, Waiter
from .quota import GpuLedger
from .state import Allocation
from .waiting import WAIT_SECONDS, AlreadyQueued, QueueEnded, Ticket, WaitingRoom

_ROOMS: weakref.WeakKeyDictionary[GpuLedger, WaitingRoom] = weakref.WeakKeyDictionary()
_VIEWS: weakref.WeakKeyDictionary[WaitingRoom, ClusterView] = weakref.WeakKeyDictionary()


def room_for(ledger: GpuLedger) -> WaitingRoom:
    """The one waiting room of ``ledger`` (one per hub process, as the ledger)."""
    room = _ROOMS.get(ledger)
    if room is None:
        room = _ROOMS[ledger] = WaitingRoom(ledger)
    return room


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return "about 1 minute" if minutes == 1 else f"about {minutes} minutes"


class GpuQueueing(Configurable):
    """Spawner mixin: wait for a GPU in a fair queue rather than be refused."""

    if TYPE_CHECKING:
        # What it uses of the spawner it is mixed into: KubeSpawner's and SovereignSpawner's.
        log: logging.Logger
        user: Any
        orm_spawner: Any
        namespace: str
        cluster_secrets_dir: str
        ledger: GpuLedger
        reflectors: ClassVar[dict[tuple[Any, ...], Any]]
        _log_name: str
        _start_future: asyncio.Future[Any] | None

        @property
        def _key(self) -> tuple[str, str]: ...
        def _report(
            self, kind: SessionEventKind, *, required: bool = False, **fields: Any
        ) -> None: ...
        def get_state(self) -> dict[str, Any]: ...

    queue_update_interval = Float(
        2.0,
        config=True,
        help="""Seconds between updates of the queue position and estimated wait on the
        progress page while a GPU spawn waits (default 2). The queue itself is set in the
        policy's `gpuQueue` section.""",
    )

    gpu_queue_user_priority = Integer(
        None,
        allow_none=True,
        config=True,
        help="""The priority (the PriorityClass value) of user pods, when they may preempt
        lower-priority pods such as the chart's placeholders. The queue then counts GPUs held by
        pods of lower priority as free, since the scheduler evicts those for a user pod, and
        admits a user at once rather than queue them behind a placeholder. Default None: every
        pod's GPUs count as taken. The chart sets it from `scheduling.podPriority` when
        placeholders are enabled. Example: `0` with placeholders at `-10`.""",
    )

    gpu_queue_view_max_age = Float(
        60.0,
        config=True,
        help="""Seconds the GPU queue keeps admitting by a cluster's last node listing once
        that cluster's API server stops answering (default 60). Past it, GPU spawns for the
        cluster's regions stay queued, with a message naming the cluster, until it answers
        again; the outage is logged once when it begins and once when it ends. `0`: wait as
        soon as a listing fails.""",
    )

    gpu_queue_node_start_seconds = Float(
        300.0,
        config=True,
        help="""Seconds a new GPU node takes from joining the cluster (NotReady, tainted
        `node.kubernetes.io/not-ready`) to Ready, as your node autoscaler and images make it
        (default 300). Used for the queue's estimated wait only: the GPUs of a node that is
        starting count as free that long after it was created. A NotReady node older than
        twice this is taken for broken and not counted. Admission never counts on a node that
        is not Ready.""",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._own_start_timeout: float = self.start_timeout
        self._ticket: Ticket | None = None
        self._queue_phase: str | None = None  # None deciding, "waiting", "done"

    @property
    def waiting_room(self) -> WaitingRoom:
        return room_for(self.ledger)

    def queue_timeout(self, policy_file: str) -> None:
        """Give JupyterHub's start timeout room for the longest wait the policy allows."""
        self._queue_phase = None
        allowance = 0.0
        try:
            policy = cached_policy(policy_file).policy
        except PolicyError:
            policy = None  # the spawn is refused with the problems when it decides
        if policy is not None and policy.gpu_queue.enabled:
            allowance = policy.gpu_queue.max_wait_minutes * 60.0
        self.start_timeout = self._own_start_timeout + allowance

    async def admit(self, identity: Identity, request: SpawnRequest, policy: Policy) -> Decision:
        """The decision for ``request``, after waiting in the GPU queue if it must."""
        room = self.waiting_room
        if not room.restored:
            self._restore_saved_places()
        # Every cluster of the policy, whichever one this spawner faces now.
        view = _VIEWS.setdefault(room, ClusterView())
        view.follow(policy, self.cluster_secrets_dir, self.namespace)
        view.max_age = self.gpu_queue_view_max_age
        room.list_nodes, room.outage = view.list_nodes, view.outage
        reflectors = type(self).reflectors
        # The pod reflector shows user pods only; placeholders come from the view's listing.
        room.pods = lambda: [*pods_everywhere(reflectors), *view.placeholders()]
        room.user_priority = self.gpu_queue_user_priority
        room.node_start_seconds = self.gpu_queue_node_start_seconds
        key = self._key
        try:
            joined = room.join(key, identity, request, policy)
        except AlreadyQueued as exc:
            self._report("spawn_denied", reasons=(("gpu_already_queued", str(exc)),))
            raise SpawnRefused(409, str(exc)) from None
        if not isinstance(joined, Ticket):
            self._queue_phase = "done"
            return joined
        try:
            await room.run_pass()
        except asyncio.CancelledError:
            room.leave(key)  # the user left (or the hub stopped) before the first pass ended
            raise
        waiter = room.queue.get(key)
        if joined.future.done() or waiter is None:
            self._queue_phase = "done"
            return joined.future.result()
        self._ticket, self._queue_phase = joined, "waiting"
        self._save_queue_state()
        place = room.place(key)
        self._report_queue("gpu_queued", waiter, position=place.position if place else None,
                           detail=joined.blocked)  # fmt: skip
        try:
            decision = await room.wait(key, joined, policy.gpu_queue.max_wait_minutes * 60.0)
        except QueueEnded:
            self._report_queue("gpu_abandoned", waiter, detail="max_wait")
            raise SpawnRefused(503, self._timed_out(policy, waiter)) from None
        except asyncio.CancelledError:
            self._report_queue("gpu_abandoned", waiter, detail="cancelled")
            raise
        finally:
            # Not saved here: a hub shutting down cancels this wait too, and the saved
            # place must outlive that; JupyterHub saves the state after a start or a stop.
            self._ticket, self._queue_phase = None, "done"
        self._report_queue("gpu_admitted", waiter)
        return decision

    def _timed_out(self, policy: Policy, waiter: Waiter) -> str:
        gpu = policy.gpu_types.get(waiter.pool.gpu_type)
        region = policy.regions.get(waiter.pool.region)
        return (
            f"No {gpu.display_name if gpu else waiter.pool.gpu_type} became free in "
            f"{region.display_name if region else waiter.pool.region} within "
            f"{_count(policy.gpu_queue.max_wait_minutes, 'minute')}, the longest this hub lets "
            "a spawn wait. Try again later, or choose another profile or region."
        )

    def _report_queue(self, kind: SessionEventKind, waiter: Waiter, **fields: Any) -> None:
        waited = max(0.0, time.time() - waiter.since)
        if kind != "gpu_queued":
            outcome = {"gpu_admitted": "admitted"}.get(kind, fields.get("detail", "cancelled"))
            WAIT_SECONDS.labels(waiter.pool.gpu_type, waiter.pool.region, outcome).observe(waited)
        self._report(
            kind,
            profile=waiter.profile,
            region=waiter.pool.region,
            gpu_type=waiter.pool.gpu_type,
            gpus=waiter.gpus,
            quota_group=waiter.group,
            waited=round(waited, 3),
            **fields,
        )

    async def queue_progress(self) -> AsyncIterator[dict[str, Any]]:
        """Position and estimated wait, every ``queue_update_interval`` while the spawn waits."""
        started = self._start_future
        while self._queue_phase is None and started is not None and not started.done():
            await asyncio.sleep(0.1)
        shown = None
        while self._queue_phase == "waiting":
            message = self.queue_message()
            if message and message != shown:
                shown = message
                yield {"progress": 5, "message": message}
            await asyncio.sleep(self.queue_update_interval)

    def queue_message(self) -> str | None:
        """What the user reads while waiting: position in line and estimated wait."""
        room, key = self.waiting_room, self._key
        place, ticket = room.place(key), self._ticket
        if place is None or ticket is None:
            return None
        pool = room.queue.get(key)
        policy = ticket.policy
        gpu = policy.gpu_types.get(pool.pool.gpu_type) if pool else None
        region = policy.regions.get(pool.pool.region) if pool else None
        wait = room.estimate(key)
        why = {
            "quota": "your group's GPU quota is in use",
            "capacity": "every matching GPU is in use",
        }.get(ticket.blocked, "others are ahead of you")
        if region is not None and (outage := room.outage(region.cluster_name)):
            why = outage
        return (
            f"Waiting for {gpu.display_name if gpu else 'a GPU'} in "
            f"{region.display_name if region else '?'} ({why}): you are number "
            f"{place.position} of {place.of} in line; estimated wait "
            f"{_minutes(wait) if wait is not None else 'unknown'}. Stop the server to leave "
            "the queue."
        )

    # -- persisted place -----------------------------------------------------------
    def queue_state(self) -> dict[str, Any] | None:
        """The waiting place for the spawner's persisted state; None when not waiting."""
        waiter = self.waiting_room.queue.get(self._key)
        if self._ticket is None or waiter is None:
            return None
        return {"waiter": waiter.to_state(), "clock": self.waiting_room.queue.to_state(),
                "maxWait": self._ticket.policy.gpu_queue.max_wait_minutes * 60.0}  # fmt: skip

    def restore_queue_place(self, saved: dict[str, Any] | None) -> None:
        """Keep a place saved before a hub restart until its owner asks again or it expires."""
        if not saved:
            return
        try:
            waiter = Waiter.from_state(saved["waiter"])
            self.waiting_room.restore(waiter, saved.get("clock") or {}, float(saved["maxWait"]))
        except (KeyError, ValueError, TypeError):
            self.log.warning("ignoring an unreadable GPU queue place of %s", self._log_name)

    def _restore_saved_places(self) -> None:
        """After a hub restart, put back every place saved in the database, in its order.

        JupyterHub loads at start-up only the spawners it thinks are running, and
        may clear a pending one's state when it finds no pod; so every saved place
        is read here, once, the first time the room is used.
        """
        self.waiting_room.restored = True
        from jupyterhub import orm  # the hub's own models: only inside a hub

        try:
            for row in self.user.db.query(orm.Spawner):
                saved = ((row.state or {}).get("sovereign") or {}).get("queued")
                if saved and row.user is not None:
                    self.restore_queue_place(saved)
        except Exception:
            self.log.exception("could not restore the GPU queue from the hub database")

    def _save_queue_state(self) -> None:
        # JupyterHub saves state only after start() returns; a place must outlive a restart.
        try:
            self.orm_spawner.state = self.get_state()
            self.user.db.commit()
        except Exception:
            self.log.exception("could not save the GPU queue place of %s", self._log_name)

    def gpu_released(self, allocation: Allocation | None) -> None:
        """A server stopped: its GPUs (if any) go to the next waiters."""
        pool, ran = None, 0.0
        if allocation is not None and allocation.gpu_type:
            pool = Pool(allocation.gpu_type, allocation.region)
            ran = time.time() - allocation.started
        self.waiting_room.released(self._key, pool, ran)
