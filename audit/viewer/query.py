"""What the audit viewer asks of a store: filtered, keyset-paged pages, sessions, anomalies.

Works on SQLite and PostgreSQL with the same SQL. Every filter value is a
bound parameter and every column name is fixed here, so no filter can change
a query. Pages are ordered newest first by ``(time, id)`` and continue from
the last row seen (keyset pagination), so page 1,000 costs what page 1 does,
using the ``(column, time, id)`` indexes the sinks create.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..schemas import schema_files
from ..sinks.postgresql import is_postgres_url
from ..store import Filters, StoreError, clauses, record_from_row

# Every family of event a person can filter by: all the registered schemas but the trail's
# proofs about itself, so a new event kind is filterable the day its schema lands.
EVENTS = tuple(sorted({path.parent.name for path in schema_files()} - {"checkpoint", "retention"}))
# The trail's proofs about itself: for `sovhub audit verify`, not for reading.
PROOFS = "event NOT IN ('checkpoint', 'retention')"
OUTCOMES = {
    "refused": ("event IN ('spawn-denied', 'login-denied', 'share-refused')", ()),
    "failed": ("event = 'spawn-failed'", ()),
    "ok": ("event NOT IN ('spawn-denied', 'login-denied', 'share-refused', 'spawn-failed')", ()),
}
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?Z?)?$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class BadFilter(ValueError):
    """A filter value that is not allowed; the message says which and what is."""


@dataclass(frozen=True, slots=True)
class Query:
    user: str = ""
    event: str = ""
    since: str = ""
    until: str = ""
    region: str = ""
    digest: str = ""
    outcome: str = ""

    @classmethod
    def parse(cls, raw: dict[str, str]) -> Query:
        """Validate filter values from a request; raises :class:`BadFilter` naming the field."""
        values = {k: (raw.get(k) or "").strip() for k in cls.__dataclass_fields__}
        for name, value in values.items():
            if len(value) > 256:
                raise BadFilter(f"{name}: at most 256 characters")
        if values["event"] and values["event"] not in EVENTS:
            raise BadFilter(f"event: {values['event']!r} is not one of {', '.join(EVENTS)}")
        if values["outcome"] and values["outcome"] not in OUTCOMES:
            raise BadFilter(f"outcome: must be one of {', '.join(OUTCOMES)}")
        for name in ("since", "until"):
            if values[name] and not _TIME.match(values[name]):
                raise BadFilter(
                    f"{name}: an ISO 8601 date or time, e.g. 2026-11-26 or 2026-11-26T09:30"
                )
        if values["digest"] and not _DIGEST.match(values["digest"]):
            raise BadFilter("digest: sha256: followed by 64 hexadecimal digits")
        return cls(**values)

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}


def where(query: Query, mark: str) -> tuple[list[str], list[Any]]:
    # The store's own conditions (they treat an empty value as no filter), plus outcome.
    filters = Filters(**{name: getattr(query, name) for name in Filters.__dataclass_fields__})
    conditions, params = clauses(filters, mark)
    conditions.append(PROOFS)
    if query.outcome:
        conditions.append(OUTCOMES[query.outcome][0])
    return conditions, list(params)


def encode_cursor(row: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps([row["time"], row["id"]]).encode()).decode()


def decode_cursor(text: str) -> tuple[str, str]:
    try:
        time, ident = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (ValueError, TypeError):
        raise BadFilter("after: not a cursor this viewer gave out") from None
    if not (isinstance(time, str) and isinstance(ident, str)):
        raise BadFilter("after: not a cursor this viewer gave out")
    return time, ident


def _listed(row: Any) -> dict[str, Any]:
    """A row as the viewer lists it: the record, with its event family (a stored column)."""
    return record_from_row(row) | {"event": row["event"]}


class Store:
    """One audit store: a SQLite file opened per use, or PostgreSQL through a pool.

    The pool (psycopg_pool, the psycopg project's own) keeps a few connections
    open, so a page costs its query rather than a new connection each time.
    """

    def __init__(self, location: str, password_file: str = "", pool_size: int = 4) -> None:
        self.location = location
        self.password = Path(password_file).read_text().strip() if password_file else ""
        self.postgres = is_postgres_url(location)
        self.mark = "%s" if self.postgres else "?"
        self.pool_size = pool_size
        self._pool: Any = None

    def _postgres_pool(self) -> Any:
        if self._pool is None:
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool

            kwargs: dict[str, Any] = {"row_factory": dict_row, "connect_timeout": 10}
            if self.password:
                kwargs["password"] = self.password
            self._pool = ConnectionPool(
                self.location, min_size=1, max_size=self.pool_size, kwargs=kwargs, open=True,
                timeout=15, name="audit-viewer",
            )  # fmt: skip
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @contextmanager
    def connect(self) -> Iterator[Any]:
        if self.postgres:
            import psycopg
            from psycopg_pool import PoolTimeout

            try:
                with self._postgres_pool().connection() as db:
                    yield db
            except (psycopg.OperationalError, PoolTimeout) as exc:
                raise StoreError(f"cannot reach the audit store ({exc})") from None
            return
        path = Path(self.location.removeprefix("sqlite:///"))
        if not path.exists():
            raise StoreError(f"{path}: no audit store yet")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    def _rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        with self.connect() as db:
            return [_listed(r) for r in db.execute(sql, params).fetchall()]

    def page(
        self, query: Query, after: str = "", limit: int = 50
    ) -> tuple[list[dict[str, Any]], str]:
        """Up to ``limit`` records, newest first, after the cursor; and the next cursor."""
        clauses, params = where(query, self.mark)
        if after:
            time, ident = decode_cursor(after)
            clauses.append(f"(time, id) < ({self.mark}, {self.mark})")
            params += [time, ident]
        sql = (
            "SELECT * FROM audit_events"  # noqa: S608 - fixed columns; values are parameters
            + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
            + f" ORDER BY time DESC, id DESC LIMIT {int(limit) + 1}"
        )
        rows = self._rows(sql, params)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (encode_cursor(rows[-1]) if more and rows else "")

    def iterate(self, query: Query) -> Iterator[dict[str, Any]]:
        """Every matching record, oldest first (exports)."""
        clauses, params = where(query, self.mark)
        sql = (
            "SELECT * FROM audit_events"  # noqa: S608 - fixed columns; values are parameters
            + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
            + " ORDER BY time, id"
        )
        with self.connect() as db:
            if self.postgres:
                with db.transaction(), db.cursor(name="audit_export") as cur:
                    cur.itersize = 2000
                    cur.execute(sql, params)
                    for r in cur:
                        yield _listed(r)
            else:
                for r in db.execute(sql, params):
                    yield _listed(r)

    def sessions(self, user: str, limit: int = 500) -> list[dict[str, Any]]:
        """The user's servers from request to stop, newest first, each with its events."""
        sql = (
            "SELECT * FROM audit_events WHERE subject = "  # noqa: S608
            f"{self.mark} AND event IN ('spawn-requested', 'spawn-denied', 'server-started', "
            "'spawn-failed', 'server-stopped', 'image-pin-changed') "
            f"ORDER BY time DESC, id DESC LIMIT {int(limit)}"
        )
        rows = list(reversed(self._rows(sql, [user])))
        sessions: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        for row in rows:
            server = row["data"].get("server", "")
            if row["event"] == "spawn-requested" or current is None or current["server"] != server:
                current = {"server": server, "events": [], "outcome": "requested"}
                sessions.append(current)
            current["events"].append(row)
            data = row["data"]
            for key in ("profile", "region", "digest", "image", "node", "gpus", "gpu_type"):
                if data.get(key) not in (None, ""):
                    current[key] = data[key]
            if row["event"] == "spawn-denied":
                current["outcome"] = "refused"
                current["reasons"] = data.get("reasons", [])
            elif row["event"] == "server-started":
                current["outcome"] = "running"
            elif row["event"] == "spawn-failed":
                current["outcome"] = "failed"
            elif row["event"] == "server-stopped":
                current["outcome"] = f"stopped ({data.get('reason', 'unknown')})"
        return list(reversed(sessions))

    def share_events(self, limit: int = 5000) -> list[dict[str, Any]]:
        """The latest share grants and revocations, oldest first (for the shares page)."""
        sql = (
            "SELECT * FROM audit_events WHERE event IN ('share-granted', 'share-revoked') "  # noqa: S608 - fixed
            f"ORDER BY time DESC, id DESC LIMIT {int(limit)}"
        )
        return list(reversed(self._rows(sql, [])))

    def anomalies(self, limit: int = 20) -> dict[str, list[dict[str, Any]]]:
        """Refusals, failures, admins acting on others' servers, entitlement losses."""
        m = self.mark
        queries = {
            "refused spawns": ("event = 'spawn-denied'", []),
            "refused logins": ("event = 'login-denied'", []),
            "refused shares": ("event = 'share-refused'", []),
            "admin actions on other users": (
                "event = 'api-action' AND subject <> actor AND actor <> ''", [],
            ),
            "entitlement losses": (
                f"event = 'server-stopped' AND data LIKE {m}", ['%"reason": "entitlement_lost"%'],
            ),
            "failed spawns": ("event = 'spawn-failed'", []),
        }  # fmt: skip
        out: dict[str, list[dict[str, Any]]] = {}
        for title, (clause, params) in queries.items():
            sql = (
                f"SELECT * FROM audit_events WHERE {clause} "  # noqa: S608 - fixed clauses
                f"ORDER BY time DESC, id DESC LIMIT {int(limit)}"
            )
            out[title] = self._rows(sql, list(params))
        return out
