"""SQLite, the embedded default store: one table, deduplicated by event id."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from .base import Sink
from .table import ddl, row

__all__ = ["SCHEMA", "SQLiteSink", "row"]

SCHEMA = ddl("INTEGER")


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
