"""The emulated control plane's controllers: what kube-controller-manager does for the API.

A real API server only stores; controllers make stored intent happen. The
emulated API server runs these beside it, on the same event loop and state,
so that a client sees what it would see from a cluster with its controller
manager: namespaces emptied and removed, dependents garbage-collected by
their ``ownerReferences``, and nodes tainted by their condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ..store import Change, Store

log = logging.getLogger(__name__)
Reconcile = Callable[[Store, list[Change]], bool]
"""One pass over the changes since the last; returns True to be called again soon
(work is left that depends on time, not on a change)."""


async def run_controller(
    store: Store, reconcile: Reconcile, *, interval: float = 0.2, resync: float = 5.0
) -> None:
    """Call ``reconcile`` on each batch of changes, at least every ``resync`` seconds."""
    queue = store.subscribe()
    try:
        again = reconcile(store, [])
        while True:
            timeout = interval if again else resync
            changes: list[Change] = []
            # asyncio.timeout: 3.11's wait_for can swallow a cancellation (see scheduler.py).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    changes.append(await queue.get())
            while not queue.empty():
                changes.append(queue.get_nowait())
            try:
                again = reconcile(store, changes)
            except Exception:
                log.exception(
                    "emulated controller %s failed",
                    getattr(reconcile, "__name__", type(reconcile).__name__),
                )
                again = True
    finally:
        store.unsubscribe(queue)
