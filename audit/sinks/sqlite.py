"""SQLite, the embedded default store: one table, deduplicated by event id.

It is read back (viewer, ``sovhub audit verify``/``export``) read-only, one
connection per read, without upgrading an old table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from .base import StoreError
from .migrations import migrate_sqlite
from .readable import ReadableSink
from .table import COLUMNS, PLACEHOLDERS, ddl, row

__all__ = ["SCHEMA", "SQLiteSink", "row"]

SCHEMA = ddl("INTEGER")
INSERT = f"INSERT OR IGNORE INTO audit_events ({COLUMNS}) VALUES ({PLACEHOLDERS})"  # noqa: S608

HEAD = (
    "SELECT epoch, seq, mac, time FROM audit_events WHERE hub = ? AND seq > 0 "
    "ORDER BY epoch DESC, seq DESC LIMIT 1"
)


class SQLiteSink(ReadableSink):
    name = "sqlite"
    mark = "?"
    option_help: ClassVar[dict[str, str]] = {
        "path": """The database file; its folder is created. Several hubs must not share one
        file: give PostgreSQL instead.""",
    }

    def __init__(self, path: str, name: str | None = None) -> None:
        super().__init__(name)
        self.path = Path(path.removeprefix("sqlite:///"))
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

    # -- read side ----------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        if not self.path.exists():
            raise StoreError(f"{self.path}: no such audit store")
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    def stream(self, db: Any, sql: str, params: list[Any]) -> Iterable[Any]:
        rows: Iterable[Any] = db.execute(sql, params)
        return rows

    def columns(self, db: Any) -> list[str]:
        return [r[1] for r in db.execute("PRAGMA table_info(audit_events)")]

    @contextmanager
    def maintaining(self) -> Iterator[sqlite3.Connection]:
        if not self.path.exists():
            raise StoreError(f"{self.path}: no such audit store")
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            migrate_sqlite(db)
            yield db
        finally:
            db.close()

    @contextmanager
    def read_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not an audit store ({exc})") from None
