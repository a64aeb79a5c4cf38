"""The ``audit_events`` table both SQL stores share: its columns, indexes and rows.

One table, one row per record: the columns queries filter on (event type,
actor, subject, region, digest) next to the record's exact JSON, so what the
MAC covered can always be verified. The indexes lead with each filter column
and end in ``(time, id)``, the audit viewer's keyset order.
"""

from __future__ import annotations

import json
from typing import Any

from ..schemas import family

# name, type; "BIGINT" is spelled per store (SQLite's INTEGER is 64-bit already).
_COLUMNS = (
    ("id", "TEXT PRIMARY KEY"),
    ("hub", "TEXT NOT NULL"),
    ("seq", "BIGINT NOT NULL"),
    ("time", "TEXT NOT NULL"),
    ("schema", "TEXT NOT NULL"),
    ("version", "TEXT NOT NULL"),
    ("event", "TEXT NOT NULL"),
    ("actor", "TEXT"),
    ("subject", "TEXT"),
    ("region", "TEXT"),
    ("digest", "TEXT"),
    ("data", "TEXT NOT NULL"),
    ("prev", "TEXT NOT NULL"),
    ("mac", "TEXT NOT NULL"),
)
COLUMNS = ", ".join(name for name, _ in _COLUMNS)
_INDEXES = {
    "audit_events_time": "time, id",
    "audit_events_subject": "subject, time, id",
    "audit_events_event": "event, time, id",
    "audit_events_region": "region, time, id",
    "audit_events_digest": "digest, time, id",
}


def ddl(bigint: str) -> str:
    """CREATE statements (idempotent) for a store whose 64-bit integer type is ``bigint``."""
    columns = ",\n    ".join(f"{n} {t.replace('BIGINT', bigint)}" for n, t in _COLUMNS)
    indexes = "\n".join(
        f"CREATE INDEX IF NOT EXISTS {name} ON audit_events ({cols});"
        for name, cols in _INDEXES.items()
    )
    return (
        f"CREATE TABLE IF NOT EXISTS audit_events (\n    {columns},\n    UNIQUE (hub, seq)\n);\n"
        + indexes
        + "\n"
    )


def row(record: dict[str, Any]) -> tuple[Any, ...]:
    """The record as a row, in column order."""
    data = record["data"]
    return (
        record["id"],
        record["hub"],
        record["seq"],
        record["time"],
        record["schema"],
        record["version"],
        family(record["schema"]),
        data.get("actor"),
        data.get("subject"),
        data.get("region"),
        data.get("digest"),
        json.dumps(data, sort_keys=True),
        record["prev"],
        record["mac"],
    )
