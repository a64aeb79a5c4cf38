"""SQLite, the embedded default store: one table, deduplicated by event id."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from ..schemas import family
from .base import Sink

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_events (
    id TEXT PRIMARY KEY,
    hub TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time TEXT NOT NULL,
    schema TEXT NOT NULL,
    version TEXT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT,
    subject TEXT,
    region TEXT,
    digest TEXT,
    data TEXT NOT NULL,
    prev TEXT NOT NULL,
    mac TEXT NOT NULL,
    UNIQUE (hub, seq)
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time);
CREATE INDEX IF NOT EXISTS audit_events_subject ON audit_events (subject, time);
CREATE INDEX IF NOT EXISTS audit_events_event ON audit_events (event, time);
"""


def row(record: dict[str, Any]) -> tuple[Any, ...]:
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


class SQLiteSink(Sink):
    name = "sqlite"

    def __init__(self, path: str, name: str | None = None) -> None:
        super().__init__(name)
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def deliver(self, records: list[dict[str, Any]]) -> None:
        if self._db is None:
            self.open()
        assert self._db is not None  # noqa: S101
        with self._db:  # one transaction per batch
            self._db.executemany(
                "INSERT OR IGNORE INTO audit_events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [row(r) for r in records],
            )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
