"""Upgrading an ``audit_events`` table in place, in SQLite and PostgreSQL.

Each store records its table's version in ``audit_schema`` (one row). A
table without it is version 1 (the first release). Opening a sink brings
the table to :data:`~.table.VERSION` in one transaction, so a hub upgraded
over an old store keeps every record and its chain verifiable; a table newer
than this code is refused with a message rather than written wrongly.

PostgreSQL runs the upgrade under an advisory lock, so hubs starting
together upgrade it once. SQLite cannot drop a constraint, so its upgrade to
version 2 rebuilds the table (copy, drop, rename), as SQLite's documentation
on ALTER TABLE prescribes.
"""

from __future__ import annotations

from typing import Any

from .table import COLUMNS, VERSION, create_indexes, create_table

LOCK = 7263011
_V1_COLUMNS = COLUMNS.removesuffix(", epoch, kid")


class SchemaTooNew(RuntimeError):
    """The store was upgraded by a newer Sovereign Hub than this one."""


def _too_new(found: int) -> SchemaTooNew:
    return SchemaTooNew(
        f"the audit_events table is at version {found}, newer than this Sovereign Hub "
        f"understands ({VERSION}); upgrade the hub (or the tool) reading it"
    )


def migrate_sqlite(db: Any) -> int:
    """Bring a SQLite store to the current version; returns the version it was at (0: new)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "audit_schema" in tables:
            found = int(db.execute("SELECT version FROM audit_schema").fetchone()[0])
        else:
            found = 1 if "audit_events" in tables else 0
            db.execute("CREATE TABLE audit_schema (version INTEGER NOT NULL)")
            db.execute("INSERT INTO audit_schema VALUES (?)", (found,))
        if found > VERSION:
            raise _too_new(found)
        if found == 0:
            db.execute(create_table("INTEGER"))
        if found == 1:
            db.execute(create_table("INTEGER", "audit_events_v2"))
            db.execute(
                f"INSERT INTO audit_events_v2 ({COLUMNS}) "  # noqa: S608 - fixed names
                f"SELECT {_V1_COLUMNS}, '', '' FROM audit_events"
            )
            db.execute("DROP TABLE audit_events")  # its indexes go with it
            db.execute("ALTER TABLE audit_events_v2 RENAME TO audit_events")
        for statement in create_indexes():
            db.execute(statement)
        db.execute("UPDATE audit_schema SET version = ?", (VERSION,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return found


def migrate_postgres(db: Any) -> int:
    """Bring a PostgreSQL store to the current version; returns the version it was at."""
    with db.transaction():
        db.execute(f"SELECT pg_advisory_xact_lock({LOCK})")
        has_events, has_schema = db.execute(
            "SELECT to_regclass('audit_events') IS NOT NULL, "
            "to_regclass('audit_schema') IS NOT NULL"
        ).fetchone()
        if has_schema:
            found = int(db.execute("SELECT version FROM audit_schema").fetchone()[0])
        else:
            found = 1 if has_events else 0
            db.execute("CREATE TABLE audit_schema (version INTEGER NOT NULL)")
            db.execute("INSERT INTO audit_schema VALUES (%s)", (found,))
        if found > VERSION:
            raise _too_new(found)
        if found == 0:
            db.execute(create_table("BIGINT"))
        if found == 1:
            for statement in (
                "ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS epoch TEXT NOT NULL DEFAULT ''",
                "ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS kid TEXT NOT NULL DEFAULT ''",
                "ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS audit_events_hub_seq_key",
                "ALTER TABLE audit_events ADD CONSTRAINT audit_events_hub_epoch_seq_key "
                "UNIQUE (hub, epoch, seq)",
            ):
                db.execute(statement)
        for statement in create_indexes():
            db.execute(statement)
        if found != VERSION:
            db.execute("UPDATE audit_schema SET version = %s", (VERSION,))
    return found


__all__ = ["SchemaTooNew", "migrate_postgres", "migrate_sqlite"]
