"""Many simulated users against one hub: at most ``concurrency`` at a time, within the
plan's deadline."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from .plan import LoadPlan, SimUser
from .report import Report
from .user import Arrivals, UserResult, simulate


def run(hub_url: str, users: Sequence[SimUser], plan: LoadPlan) -> Report:
    """Run ``users`` against the hub at ``hub_url``; bounded by ``plan.deadline_seconds``."""
    t0 = time.monotonic()
    results: list[UserResult] = []
    arrivals = Arrivals(len(users)) if plan.spawn_together else None
    pool = ThreadPoolExecutor(plan.concurrency, thread_name_prefix="simuser")
    futures = [pool.submit(simulate, hub_url, u, plan, t0, arrivals) for u in users]
    deadline = t0 + plan.deadline_seconds
    unfinished = 0
    for future in futures:
        try:
            results.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
        except TimeoutError:
            unfinished += 1
    # Past the deadline, users not yet started never start; those mid-way are left
    # to finish on their own (their threads end with their HTTP timeouts).
    pool.shutdown(wait=False, cancel_futures=True)
    return Report(plan, results, time.monotonic() - t0, unfinished)


def run_apart(hub_url: str, users: Sequence[SimUser], plan: LoadPlan) -> Report:
    """:func:`run` in a process of its own.

    The emulated cluster runs in a thread of the caller's process; a thousand
    simulated users' threads beside it take the GIL from its API server, which
    then answers KubeSpawner's requests later than their 3 s timeout (seen at
    1,000 users). Apart, the API server competes only for CPU, as a real one does.
    """
    # "spawn": a fork would copy the cluster thread's locks in whatever state they are.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(run, hub_url, list(users), plan).result()
