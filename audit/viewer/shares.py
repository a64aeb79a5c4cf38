"""Active shares, as the audit trail tells them: each grant not yet revoked nor expired.

The viewer reads only the audit store, never the hub, so the list is what the
trail recorded: a share the hub revoked appears until its ``share-revoked``
record reaches the store; one past its ``expires_at`` is left out even before.
Share codes are not listed: until someone exchanges one, it grants nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any


def active_shares(rows: Iterable[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The ``share-granted`` records, oldest first in ``rows``, still in force at ``now``.

    Returns them newest first.
    """
    live: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for row in rows:
        data = row["data"]
        if data.get("recipient_kind") == "code":
            continue
        key = (data["subject"], data["server"], data["recipient_kind"], data["recipient"])
        if row["event"] == "share-granted":
            live[key] = row
        else:
            live.pop(key, None)
    # A grant recorded without an end (expires_at "") is shown: better listed than hidden.
    current = [
        r
        for r in live.values()
        if not r["data"].get("expires_at") or datetime.fromisoformat(r["data"]["expires_at"]) > now
    ]
    return sorted(current, key=lambda r: r["time"], reverse=True)
