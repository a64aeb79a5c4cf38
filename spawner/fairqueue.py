"""The GPU queue as a pure model: who waits, in which order, who is admitted next.

No I/O, no clock, no asyncio: the spawner's waiting room (:mod:`.waiting`)
owns the one instance of a hub, feeds it arrivals, departures and a check
that says whether a waiter fits now, and persists :meth:`FairQueue.to_state`.

Order, in one place:

* Waiters compete in a **pool**, one GPU type in one policy region.
* **Fair share across groups** is start-time fair queuing (stride scheduling):
  each group has a pass value that grows by ``gpus / weight`` on every
  admission, where the weight is the group's GPU quota. A waiter's tag is its
  group's pass when it joined plus the GPUs of the group's waiters ahead of it;
  waiters are served in (tag, arrival) order. A group that waited while idle
  banks no credit: on joining, its pass is raised to the queue's virtual time.
* **FIFO within a group**: tags of one group's waiters grow with arrival.
* **No starvation**: a waiting tag never changes while other groups' tags grow
  with each admission, so every waiter reaches the head of its pool; a head
  that does not fit the free capacity blocks its pool (no one behind it jumps
  ahead, so a 4-GPU request is not starved by 1-GPU ones), and a head whose
  group quota is full blocks its group (FIFO), not the pool.
* **One place per user**: :meth:`FairQueue.add` refuses a second waiter of
  the same user (whatever the server).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Key = tuple[str, str]  # (username, server name)
Blocked = Literal["quota", "capacity", "absent"]


@dataclass(frozen=True, slots=True, order=True)
class Pool:
    """What waiters compete for: a GPU type (policy ``gpuTypes`` key) in a policy region."""

    gpu_type: str
    region: str

    def __str__(self) -> str:
        return f"{self.gpu_type}/{self.region}"


@dataclass(frozen=True, slots=True)
class Waiter:
    """One queued spawn."""

    user: str
    server: str
    pool: Pool
    group: str
    """The quota group the waiter's share is counted in (its first granting group)."""
    gpus: int
    since: float
    """When the waiter joined, seconds since the epoch (kept across hub restarts)."""
    seq: int = 0
    """Arrival number, set by :meth:`FairQueue.add`; breaks ties between equal tags."""
    tag: float = 0.0
    """Fair-share start tag, set by :meth:`FairQueue.add`."""
    profile: str = ""
    """The profile asked for (what the admin view shows)."""

    @property
    def key(self) -> Key:
        return (self.user, self.server)

    def to_state(self) -> dict[str, Any]:
        data = asdict(self)
        data["pool"] = asdict(self.pool)
        return data

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Waiter:
        """Read :meth:`to_state`'s form; raise KeyError, ValueError or TypeError if unusable."""
        pool = state["pool"]
        return cls(
            user=str(state["user"]),
            server=str(state["server"]),
            pool=Pool(str(pool["gpu_type"]), str(pool["region"])),
            group=str(state["group"]),
            gpus=int(state["gpus"]),
            since=float(state["since"]),
            seq=int(state["seq"]),
            tag=float(state["tag"]),
            profile=str(state.get("profile") or ""),
        )


class AlreadyQueued(ValueError):
    """The user already waits for a GPU (a user holds one place in the queue at most)."""

    def __init__(self, waiter: Waiter) -> None:
        name = f"server {waiter.server!r}" if waiter.server else "default server"
        super().__init__(
            f"You are already waiting for a GPU for your {name}; leave that queue first "
            "(stop that server) to wait for another."
        )
        self.waiter = waiter


@dataclass(frozen=True, slots=True)
class Place:
    """Where a waiter stands in its pool."""

    position: int
    """1 for the next to be admitted in the pool."""
    of: int
    """Waiters in the pool."""
    gpus_ahead: int
    """GPUs wanted by the waiters ahead in the pool, plus the waiter's own."""


class FairQueue:
    """The waiters of one hub, their fair order and the admission pass.

    ``weights`` maps a quota group to its weight (its GPU quota); a group
    missing from it weighs 1.
    """

    def __init__(self, weights: Mapping[str, int] | None = None) -> None:
        self.weights: dict[str, int] = dict(weights or {})
        self._waiters: dict[Key, Waiter] = {}
        self._passes: dict[str, float] = {}
        self._virtual = 0.0
        self._seq = 0

    # -- membership -----------------------------------------------------------
    def __len__(self) -> int:
        return len(self._waiters)

    def __contains__(self, key: object) -> bool:
        return key in self._waiters

    def get(self, key: Key) -> Waiter | None:
        return self._waiters.get(key)

    def waiters(self) -> list[Waiter]:
        return list(self._waiters.values())

    def _weight(self, group: str) -> int:
        return max(1, self.weights.get(group, 1))

    def add(self, waiter: Waiter) -> Waiter:
        """Queue ``waiter`` and return it with its arrival number and tag.

        Raises :class:`AlreadyQueued` when the same user already waits. The
        same key added again (a restarted hub restoring its queue) keeps the
        place it had.
        """
        known = self._waiters.get(waiter.key)
        if known is not None:
            return known
        for other in self._waiters.values():
            if other.user == waiter.user:
                raise AlreadyQueued(other)
        mine = [w for w in self._waiters.values() if w.group == waiter.group]
        if mine:
            last = max(mine, key=lambda w: (w.tag, w.seq))
            tag = last.tag + last.gpus / self._weight(last.group)
        else:
            tag = max(self._passes.get(waiter.group, 0.0), self._virtual)
            self._passes[waiter.group] = tag
        self._seq += 1
        placed = _replace(waiter, seq=self._seq, tag=tag)
        self._waiters[placed.key] = placed
        return placed

    def remove(self, key: Key) -> Waiter | None:
        """Take a waiter out (cancelled, timed out or admitted); None if it was not queued."""
        return self._waiters.pop(key, None)

    # -- order ------------------------------------------------------------------
    def order(self) -> list[Waiter]:
        """Every waiter, next to be served first."""
        return sorted(self._waiters.values(), key=lambda w: (w.tag, w.seq))

    def place(self, key: Key) -> Place | None:
        """Where the waiter ``key`` stands in its pool; None if it is not queued."""
        me = self._waiters.get(key)
        if me is None:
            return None
        pool = [w for w in self.order() if w.pool == me.pool]
        at = next(i for i, w in enumerate(pool) if w.key == key)
        return Place(at + 1, len(pool), sum(w.gpus for w in pool[: at + 1]))

    def admit(
        self,
        try_admit: Callable[[Waiter], Blocked | None],
        waits: Callable[[Waiter, Blocked], None] | None = None,
    ) -> list[Waiter]:
        """One admission pass: offer waiters, in order, to ``try_admit``; return those admitted.

        ``try_admit`` returns None when it admitted the waiter (and took its
        GPUs from what it tracks as free), or why the waiter does not fit. A
        pool whose head does not fit the capacity is closed to the rest of the
        pass, and so is a group whose head does not fit its quota. ``absent``
        (a place kept over a hub restart whose owner has not come back) closes
        nothing: the waiter keeps its place and others pass it meanwhile.
        ``waits`` is told why each waiter that stays waits, including those never
        offered because their pool or group was closed.
        """
        closed_pools: set[Pool] = set()
        closed_groups: set[str] = set()
        admitted: list[Waiter] = []
        for waiter in self.order():
            if waiter.group in closed_groups or waiter.pool in closed_pools:
                if waits is not None:
                    waits(waiter, "quota" if waiter.group in closed_groups else "capacity")
                continue
            blocked = try_admit(waiter)
            if blocked is not None and waits is not None:
                waits(waiter, blocked)
            if blocked == "capacity":
                closed_pools.add(waiter.pool)
            elif blocked == "quota":
                closed_groups.add(waiter.group)
            elif blocked is None:
                self._admitted(waiter)
                admitted.append(waiter)
        return admitted

    def _admitted(self, waiter: Waiter) -> None:
        del self._waiters[waiter.key]
        self._virtual = max(self._virtual, waiter.tag)
        done = waiter.tag + waiter.gpus / self._weight(waiter.group)
        self._passes[waiter.group] = max(self._passes.get(waiter.group, 0.0), done)

    # -- persistence --------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """The fair-share clock (waiters are persisted one by one, with their servers)."""
        return {"virtual": self._virtual, "seq": self._seq, "passes": dict(self._passes)}

    def restore(self, clock: Mapping[str, Any], waiters: Iterable[Waiter]) -> None:
        """Put back the clock and the waiters of a persisted queue, places unchanged."""
        self._virtual = max(self._virtual, float(clock.get("virtual", 0.0)))
        self._seq = max(self._seq, int(clock.get("seq", 0)))
        for group, value in dict(clock.get("passes") or {}).items():
            self._passes[str(group)] = max(self._passes.get(str(group), 0.0), float(value))
        for waiter in waiters:
            self._waiters.setdefault(waiter.key, waiter)
            self._seq = max(self._seq, waiter.seq)


def _replace(waiter: Waiter, **changes: Any) -> Waiter:
    data = {f: getattr(waiter, f) for f in Waiter.__dataclass_fields__}
    data.update(changes)
    return Waiter(**data)


def estimated_wait(
    place: Place,
    slots: int,
    mean_hold_seconds: float,
    coming: Iterable[tuple[int, float]] = (),
) -> float:
    """Seconds until ``place`` is likely admitted.

    ``slots`` GPUs serve the pool and each is held ``mean_hold_seconds`` on
    average, so one frees every ``mean_hold_seconds / slots``; the waiter needs
    the GPUs ahead of it and its own to have freed. A rough figure that assumes
    every server in the pool was started just now: shown as "about".

    ``coming``: nodes that are starting, as (GPUs of the pool's kind, seconds
    until likely Ready). Once the GPUs of the soonest of them cover the waiter's,
    it waits no longer than they take; otherwise the pool serves the rest with
    their GPUs added to ``slots`` once they are all Ready. The shorter estimate
    wins.
    """
    best = float("inf") if slots <= 0 else place.gpus_ahead * mean_hold_seconds / slots
    added, ready_in = 0, 0.0
    for gpus, seconds in sorted(coming, key=lambda c: c[1]):
        added, ready_in = added + gpus, max(ready_in, seconds)
        if added >= place.gpus_ahead:
            return min(best, ready_in)
    if added:
        rest = (place.gpus_ahead - added) * mean_hold_seconds / (slots + added)
        best = min(best, ready_in + rest)
    return best
