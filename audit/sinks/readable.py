"""Stores that deliver and read: the one read path of the viewer and ``sovhub audit``.

Like dask-gateway's backends, a store is one plug-in with both sides. The
write side is :class:`~.base.Sink`'s (``deliver``, ``head``). The read side is
here, as SQL both backends share, so SQLite and PostgreSQL are read by the
same queries. A backend implements only what differs between drivers:

- ``mark``: the driver's parameter placeholder (``?`` or ``%s``);
- ``reading()``: a context manager giving a read-only connection whose rows
  are mappings; it raises :class:`~.base.StoreError` when the store does not
  exist or cannot be reached;
- ``stream(db, sql, params)``: the rows of a result of any size, fetched in pages;
- ``columns(db)``: the column names of ``audit_events`` (an old table may
  lack the newer ones: it is read without being upgraded);
- ``read_errors()``: a context manager turning the driver's errors while
  reading into :class:`~.base.StoreError`;
- ``maintaining()``: a read-write connection with the table upgraded to the
  current version and mapping rows, for ``sovhub audit retain``.

Every column name and clause is fixed here and every value a bound
parameter, so no filter can change a query. Pages are newest first by
``(time, id)`` and continue after the last row seen (keyset pagination), so
page 1,000 costs what page 1 does, on the ``(column, time, id)`` indexes of
:mod:`.table`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from ..schemas import PROOFS
from .base import Sink
from .table import Filters, chain_order, clauses, record_from_row

# What each outcome a person can filter by means, as a condition on fixed event names.
OUTCOMES = {
    "refused": "event IN ('spawn-denied', 'login-denied', 'share-refused')",
    "failed": "event = 'spawn-failed'",
    "ok": "event NOT IN ('spawn-denied', 'login-denied', 'share-refused', 'spawn-failed')",
}
# A user's server from request to stop (the viewer's sessions page).
SESSION_EVENTS = (
    "spawn-requested",
    "spawn-denied",
    "server-started",
    "spawn-failed",
    "server-stopped",
    "image-pin-changed",
)
SHARE_EVENTS = ("share-granted", "share-revoked")
# What a reviewer looks at first: title → condition and its parameters.
ANOMALIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "refused spawns": ("event = 'spawn-denied'", ()),
    "refused logins": ("event = 'login-denied'", ()),
    "refused shares": ("event = 'share-refused'", ()),
    "admin actions on other users": (
        "event = 'api-action' AND subject <> actor AND actor <> ''", (),
    ),
    "entitlement losses": (
        "event = 'server-stopped' AND data LIKE {m}", ('%"reason": "entitlement_lost"%',),
    ),
    "failed spawns": ("event = 'spawn-failed'", ()),
}  # fmt: skip


def listed(stored: Any) -> dict[str, Any]:
    """A row as the viewer lists it: the record, with its event family (a stored column)."""
    return record_from_row(stored) | {"event": stored["event"]}


class ReadableSink(Sink):
    """A sink whose store can be read back; see the module docstring for the contract."""

    mark: str = "?"

    def reading(self) -> AbstractContextManager[Any]:
        """A read-only connection whose rows are mappings; raises StoreError."""
        raise NotImplementedError

    def stream(self, db: Any, sql: str, params: list[Any]) -> Iterable[Any]:
        """The rows of ``sql``, fetched in pages (a trail may not fit in memory)."""
        raise NotImplementedError

    def columns(self, db: Any) -> list[str]:
        """The column names of ``audit_events``."""
        raise NotImplementedError

    def read_errors(self) -> AbstractContextManager[Any]:
        """Turns the driver's errors while reading into StoreError."""
        raise NotImplementedError

    def maintaining(self) -> AbstractContextManager[Any]:
        """A read-write connection, table at the current version, rows as mappings, that
        manages its own transactions; raises StoreError when the store cannot be reached."""
        raise NotImplementedError

    # -- shared SQL ---------------------------------------------------------------------

    def _select(self, conditions: list[str], order: str, limit: int | None = None) -> str:
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        # Fixed clauses; every value is a bound parameter.
        return f"SELECT * FROM audit_events{where} ORDER BY {order}{tail}"  # noqa: S608

    def _in(self, events: Iterable[str]) -> tuple[str, list[str]]:
        names = list(events)
        return f"event IN ({', '.join(self.mark for _ in names)})", names

    def _rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        with self.reading() as db:
            return [listed(r) for r in db.execute(sql, params).fetchall()]

    def conditions(self, filters: Filters, outcome: str = "") -> tuple[list[str], list[Any]]:
        """Conditions for what a person reads: the filters and outcome, proofs left out."""
        conditions, params = clauses(filters, self.mark)
        conditions.append(f"event NOT IN ({', '.join(repr(e) for e in PROOFS)})")
        if outcome:
            conditions.append(OUTCOMES[outcome])
        return conditions, list(params)

    def records(self, filters: Filters | None = None) -> Iterator[dict[str, Any]]:
        """Every matching record as written, in each hub's chain order (verify, export)."""
        conditions, params = clauses(filters or Filters(), self.mark)
        with self.reading() as db, self.read_errors():
            sql = self._select(conditions, chain_order(self.columns(db)))
            yield from (record_from_row(r) for r in self.stream(db, sql, params))

    def page(
        self, filters: Filters, outcome: str = "", after: tuple[str, str] | None = None,
        limit: int = 50,
    ) -> tuple[list[dict[str, Any]], bool]:  # fmt: skip
        """Up to ``limit`` records newest first, after ``(time, id)``; and whether more follow."""
        conditions, params = self.conditions(filters, outcome)
        if after:
            conditions.append(f"(time, id) < ({self.mark}, {self.mark})")
            params += list(after)
        rows = self._rows(self._select(conditions, "time DESC, id DESC", limit + 1), params)
        return rows[:limit], len(rows) > limit

    def listing(self, filters: Filters, outcome: str = "") -> Iterator[dict[str, Any]]:
        """Every matching record oldest first by time, proofs left out (the viewer's exports)."""
        conditions, params = self.conditions(filters, outcome)
        with self.reading() as db:
            sql = self._select(conditions, "time, id")
            yield from (listed(r) for r in self.stream(db, sql, params))

    def session_events(self, user: str, limit: int = 500) -> list[dict[str, Any]]:
        """The user's latest server events (request to stop), newest first."""
        event_in, names = self._in(SESSION_EVENTS)
        sql = self._select([f"subject = {self.mark}", event_in], "time DESC, id DESC", limit)
        return self._rows(sql, [user, *names])

    def share_events(self, limit: int = 5000) -> list[dict[str, Any]]:
        """The latest share grants and revocations, newest first."""
        event_in, names = self._in(SHARE_EVENTS)
        return self._rows(self._select([event_in], "time DESC, id DESC", limit), names)

    def anomalies(self, limit: int = 20) -> dict[str, list[dict[str, Any]]]:
        """Per :data:`ANOMALIES` title, its latest records, newest first."""
        return {
            title: self._rows(
                self._select([clause.format(m=self.mark)], "time DESC, id DESC", limit),
                list(params),
            )
            for title, (clause, params) in ANOMALIES.items()
        }

    def daily_counts(self, since: str, until: str, events: Iterable[str]) -> list[Any]:
        """Rows ``(day, event, n)`` of ``events`` in ``[since, until)``; ``substr`` of the
        ISO 8601 time is the day on both backends."""
        event_in, names = self._in(events)
        m = self.mark
        sql = (
            "SELECT substr(time, 1, 10) AS day, event, COUNT(*) AS n FROM audit_events "  # noqa: S608 - fixed SQL
            f"WHERE time >= {m} AND time < {m} AND {event_in} GROUP BY substr(time, 1, 10), event"
        )
        with self.reading() as db:
            return list(db.execute(sql, [since, until, *names]).fetchall())

    def region_counts(self, since: str, until: str, events: Iterable[str]) -> list[Any]:
        """Rows ``(region, event, n)`` of ``events`` in ``[since, until)``; no region is ''."""
        event_in, names = self._in(events)
        m = self.mark
        sql = (
            "SELECT COALESCE(region, '') AS region, event, COUNT(*) AS n FROM audit_events "  # noqa: S608
            f"WHERE time >= {m} AND time < {m} AND {event_in} GROUP BY COALESCE(region, ''), event"
        )
        with self.reading() as db:
            return list(db.execute(sql, [since, until, *names]).fetchall())

    def event_rows(self, since: str, until: str, events: Iterable[str]) -> list[Any]:
        """Rows ``(time, event, data)`` of ``events`` in ``[since, until)``, oldest first;
        ``data`` is the record's JSON text."""
        event_in, names = self._in(events)
        m = self.mark
        sql = (
            f"SELECT time, event, data FROM audit_events WHERE time >= {m} AND time < {m} "  # noqa: S608
            f"AND {event_in} ORDER BY time, id"
        )
        with self.reading() as db:
            return list(db.execute(sql, [since, until, *names]).fetchall())
