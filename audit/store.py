"""Reading records back from a store or an export, for verification, queries and exports."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .sinks.postgresql import is_postgres_url


class StoreError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Filters:
    user: str | None = None
    event: str | None = None
    since: str | None = None
    until: str | None = None
    region: str | None = None
    digest: str | None = None


def record_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of ``audit_events`` (SQLite or PostgreSQL) as the record that was written: the
    one reading of a stored row, for verification, queries, exports and the viewer."""
    record = {
        "seq": row["seq"],
        "id": row["id"],
        "time": row["time"],
        "hub": row["hub"],
        "schema": row["schema"],
        "version": row["version"],
        "data": json.loads(row["data"]),
        "prev": row["prev"],
        "mac": row["mac"],
    }
    # Records written before epochs and key ids existed had neither field,
    # and their MACs cover exactly what they had: add them only when set.
    names = row.keys()
    for name in ("epoch", "kid"):
        if name in names and row[name]:
            record[name] = row[name]
    return record


def _order(columns: Iterable[str]) -> str:
    """Each hub's chains in order: epochs sort by the time they began."""
    return "hub, epoch, seq" if "epoch" in columns else "hub, seq"


def read(
    store: str, filters: Filters | None = None, password: str = ""
) -> Iterator[dict[str, Any]]:
    """Records of ``store``, in order.

    ``store`` is a PostgreSQL URL (``postgresql://…``), a SQLite file (or
    ``sqlite:///path``), or a JSON-lines export. Databases are read in each
    hub's chain order; an export in file order, so a reordered export is
    visible to verification.
    """
    filters = filters or Filters()
    if is_postgres_url(store):
        yield from _read_postgres(store, filters, password)
        return
    path = Path(store.removeprefix("sqlite:///"))
    if not path.exists():
        raise StoreError(f"{store}: no such audit store")
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        with open(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise StoreError(f"{store}:{number}: not a JSON record") from None
                if _matches(record, filters):
                    yield record
        return
    where, params = _where(filters, "?")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        columns = [r[1] for r in db.execute("PRAGMA table_info(audit_events)")]
        order = _order(columns)
        yield from (
            record_from_row(r)
            # The clauses are fixed strings; every value is a bound parameter.
            for r in db.execute(f"SELECT * FROM audit_events {where} ORDER BY {order}", params)  # noqa: S608
        )
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{store}: not an audit store ({exc})") from None
    finally:
        db.close()


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


def _where(filters: Filters, mark: str) -> tuple[str, list[str]]:
    conditions, params = clauses(filters, mark)
    return (f"WHERE {' AND '.join(conditions)}" if conditions else ""), params


def _read_postgres(store: str, filters: Filters, password: str) -> Iterator[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    where, params = _where(filters, "%s")
    try:
        extra: dict[str, Any] = {"password": password} if password else {}
        db = psycopg.connect(store, connect_timeout=10, row_factory=dict_row, **extra)
    except psycopg.Error as exc:
        raise StoreError(f"{_redact(store)}: cannot connect ({exc})") from None
    try:
        # A named (server-side) cursor streams a trail of any size in pages.
        with db.transaction(), db.cursor(name="sovhub_audit_read") as cur:
            columns = [
                r["column_name"]
                for r in db.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'audit_events' AND table_schema = current_schema()"
                )
            ]
            cur.itersize = 2000
            order = _order(columns)
            cur.execute(f"SELECT * FROM audit_events {where} ORDER BY {order}", params)  # noqa: S608
            yield from (record_from_row(r) for r in cur)
    except psycopg.errors.UndefinedTable:
        raise StoreError(f"{_redact(store)}: not an audit store (no audit_events table)") from None
    except psycopg.Error as exc:
        raise StoreError(f"{_redact(store)}: {exc}") from None
    finally:
        db.close()


def _redact(url: str) -> str:
    """The URL without a password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _matches(record: dict[str, Any], f: Filters) -> bool:
    data = record.get("data", {})
    family = str(record.get("schema", "")).rstrip("/").split("/")[-2:-1]
    checks = [
        f.user is None or data.get("subject") == f.user,
        f.event is None or family == [f.event],
        f.region is None or data.get("region") == f.region,
        f.digest is None or data.get("digest") == f.digest,
        f.since is None or record.get("time", "") >= f.since,
        f.until is None or record.get("time", "") < f.until,
    ]
    return all(checks)
