"""Chain epochs: how a hub that lost its chain position starts again without refusing service.

A hub's chain position (its last sequence number and MAC) lives at the head
of its spool. When the spool is gone (a new hub, a volume lost, an emptyDir
that did not survive a restart), the hub cannot continue its chain: it starts
a new *epoch*, a chain of its own under a new epoch id, whose first record
(``epoch-started``) says where the previous chain ended as the store showed
it. Stores key records by (hub, epoch, seq), so the new epoch's sequence
numbers never collide with the old ones, and ``sovhub audit verify`` reports
the boundary instead of a broken chain.

Epoch ids begin with the UTC time they started (``20261129T131500Z-a1b2c3``),
so sorting them sorts epochs in the order they began.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from .sinks.base import Sink

log = logging.getLogger(__name__)


def new_epoch_id(now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def previous_end(sinks: Iterable[Sink], hub: str, timeout: float) -> dict[str, Any]:
    """The ``epoch-started`` data naming where ``hub``'s chain ended in the first store
    that can be read (SQLite, PostgreSQL) and answers within ``timeout`` seconds."""
    tried: list[str] = []
    for sink in sinks:
        try:
            head = sink.head(hub, timeout)
        except NotImplementedError:
            continue
        except Exception as exc:  # an unreachable store: try the next, else "unknown"
            log.warning(
                "audit sink %s: cannot read where %s's chain ended (%s)", sink.name, hub, exc
            )
            tried.append(sink.name)
            continue
        if head is None:
            return {"actor": "system", "subject": "", "previous_state": "none",
                    "looked_in": sink.name}  # fmt: skip
        return {
            "actor": "system",
            "subject": "",
            "previous_state": "found",
            "previous_epoch": head["epoch"],
            "previous_seq": int(head["seq"]),
            "previous_mac": head["mac"],
            "previous_time": head["time"],
            "looked_in": sink.name,
        }
    reason = f"unreachable: {', '.join(tried)}"[:256] if tried else "no readable sink configured"
    return {"actor": "system", "subject": "", "previous_state": "unknown", "looked_in": reason}
