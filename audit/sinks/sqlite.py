"""SQLite, the embedded default store: one table, deduplicated by event id."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from .base import Sink
from .migrations import migrate_sqlite
from .table import COLUMNS, PLACEHOLDERS, ddl, row

__all__ = ["SCHEMA", "SQLiteSink", "row"]

SCHEMA = ddl("INTEGER")
INSERT = f"INSERT OR IGNORE INTO audit_events ({COLUMNS}) VALUES ({PLACEHOLDERS})"  # noqa: S608

HEAD = (
    "SELECT epoch, seq, mac, time FROM audit_events WHERE hub = ? AND seq > 0 "
    "ORDER BY epoch DESC, seq DESC LIMIT 1"
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
        # isolation_level=None: the migration and each batch manage their own transactions.
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            migrate_sqlite(db)
        except Exception:
            db.close()
            raise
        self._db = db

    def deliver(self, records: list[dict[str, Any]]) -> None:
        if self._db is None:
            self.open()
        assert self._db is not None  # noqa: S101
        db = self._db
        db.execute("BEGIN")  # one transaction per batch
        try:
            db.executemany(INSERT, [row(r) for r in records])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def head(self, hub: str, timeout: float) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        self.open()
        assert self._db is not None  # noqa: S101
        found = self._db.execute(HEAD, (hub,)).fetchone()
        if found is None:
            return None
        return dict(zip(("epoch", "seq", "mac", "time"), found, strict=True))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
