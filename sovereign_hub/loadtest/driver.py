"""Many simulated users against one hub: at most ``concurrency`` at a time, within the
plan's deadline."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from .plan import LoadPlan, SimUser
from .report import Report
from .user import UserResult, simulate


def run(hub_url: str, users: Sequence[SimUser], plan: LoadPlan) -> Report:
    """Run ``users`` against the hub at ``hub_url``; bounded by ``plan.deadline_seconds``."""
    t0 = time.monotonic()
    results: list[UserResult] = []
    pool = ThreadPoolExecutor(plan.concurrency, thread_name_prefix="simuser")
    futures = [pool.submit(simulate, hub_url, u, plan, t0) for u in users]
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
