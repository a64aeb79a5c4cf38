"""The ``audit_events`` table both SQL stores share: its columns, indexes, rows and versions.

One table, one row per record: the columns queries filter on (event type,
actor, subject, region, digest) next to the record's exact JSON, so what the
MAC covered can always be verified. The indexes lead with each filter column
and end in ``(time, id)``, the audit viewer's keyset order.

The table is versioned (``audit_schema.version``) and upgraded in place by
:mod:`.migrations` when a sink opens it:

- **1**: the first release; one chain per hub, ``UNIQUE (hub, seq)``.
- **2**: chain epochs and key ids: ``epoch`` and ``kid`` columns (empty for
  rows written before), ``UNIQUE (hub, epoch, seq)``, so a hub that lost its
  spool starts a new epoch at seq 1 instead of being refused for ever.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..schemas import family

VERSION = 2

# name, type; "BIGINT" is spelled per store (SQLite's INTEGER is 64-bit already).
# Columns added by a migration go at the end, where ALTER TABLE puts them.
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
    ("epoch", "TEXT NOT NULL DEFAULT ''"),
    ("kid", "TEXT NOT NULL DEFAULT ''"),
)
COLUMNS = ", ".join(name for name, _ in _COLUMNS)
PLACEHOLDERS = ",".join("?" for _ in _COLUMNS)
_INDEXES = {
    "audit_events_time": "time, id",
    "audit_events_subject": "subject, time, id",
    "audit_events_event": "event, time, id",
    "audit_events_region": "region, time, id",
    "audit_events_digest": "digest, time, id",
}


def create_table(bigint: str, name: str = "audit_events") -> str:
    """CREATE TABLE (idempotent) for the current version."""
    columns = ",\n    ".join(f"{n} {t.replace('BIGINT', bigint)}" for n, t in _COLUMNS)
    return (
        f"CREATE TABLE IF NOT EXISTS {name} (\n    {columns},\n"
        f"    CONSTRAINT audit_events_hub_epoch_seq_key UNIQUE (hub, epoch, seq)\n)"
    )


def create_indexes() -> list[str]:
    return [
        f"CREATE INDEX IF NOT EXISTS {name} ON audit_events ({cols})"
        for name, cols in _INDEXES.items()
    ]


def ddl(bigint: str) -> str:
    """CREATE statements (idempotent) for a store whose 64-bit integer type is ``bigint``."""
    return ";\n".join([create_table(bigint), *create_indexes()]) + ";\n"


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
        _column(data.get("actor")),
        _column(data.get("subject")),
        _column(data.get("region")),
        _column(data.get("digest")),
        json.dumps(data, sort_keys=True),
        record["prev"],
        record["mac"],
        record.get("epoch", ""),
        record.get("kid", ""),
    )


def _column(value: Any) -> Any:
    """A filter column's text without NUL, which PostgreSQL's text type cannot hold: one
    hostile value must not make a whole batch undeliverable. The ``data`` column keeps
    the exact value (JSON escapes it), so the MAC still verifies."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\\u0000")
    return value


@dataclass(frozen=True, slots=True)
class Filters:
    """Which records to read; an unset (or empty) field does not filter."""

    user: str | None = None
    event: str | None = None
    since: str | None = None
    until: str | None = None
    region: str | None = None
    digest: str | None = None


def clauses(filters: Filters, mark: str) -> tuple[list[str], list[str]]:
    """SQL conditions on fixed column names, with every value a bound parameter."""
    out, params = [], []
    for column, value in (
        ("subject", filters.user),
        ("event", filters.event),
        ("region", filters.region),
        ("digest", filters.digest),
    ):
        if value:
            out.append(f"{column} = {mark}")
            params.append(value)
    if filters.since:
        out.append(f"time >= {mark}")
        params.append(filters.since)
    if filters.until:
        out.append(f"time < {mark}")
        params.append(filters.until)
    return out, params


def chain_order(columns: Iterable[str]) -> str:
    """Each hub's chains in order: epochs sort by the time they began. A table from
    before epochs (read without upgrading it) has one chain per hub."""
    return "hub, epoch, seq" if "epoch" in columns else "hub, seq"


def record_from_row(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A row of ``audit_events`` (SQLite or PostgreSQL) as the record that was written: the
    one reading of a stored row, for verification, queries, exports and the viewer."""
    record = {
        "seq": stored["seq"],
        "id": stored["id"],
        "time": stored["time"],
        "hub": stored["hub"],
        "schema": stored["schema"],
        "version": stored["version"],
        "data": json.loads(stored["data"]),
        "prev": stored["prev"],
        "mac": stored["mac"],
    }
    # Records written before epochs and key ids existed had neither field,
    # and their MACs cover exactly what they had: add them only when set.
    names = stored.keys()
    for name in ("epoch", "kid"):
        if name in names and stored[name]:
            record[name] = stored[name]
    return record
