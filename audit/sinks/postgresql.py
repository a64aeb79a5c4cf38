"""PostgreSQL: the shared store for production hubs, deduplicated by event id.

Each batch is one transaction: the rows are streamed with ``COPY`` into a
session-local staging table, then moved into ``audit_events`` with
``ON CONFLICT (id) DO NOTHING``, so a batch re-sent after a lost
acknowledgement adds nothing. A different record claiming a (hub, epoch, seq)
that is already stored is not ignored: the insert fails and the shipper keeps
retrying and logging, because that means two chains claim one hub name. A hub
that lost its spool does not meet this: it starts a new epoch (see
:mod:`..epoch`). The table is upgraded in place on open (:mod:`.migrations`).

The driver is psycopg 3 (binary build): maintained by the PostgreSQL
community's psycopg project, with COPY support and libpq's own handling of
``PGPASSWORD``, ``PGPASSFILE`` and TLS settings.

It is read back (viewer, ``sovhub audit verify``/``export``) through a pool
of a few connections (psycopg_pool, the psycopg project's own) when
``pool_size`` is set, so a page costs its query rather than a connection;
else through one connection per read. Large reads stream through a named
(server-side) cursor in pages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from sovereign_hub.dburl import SECRET_PARAMETERS
from sovereign_hub.dburl import split_password as split_url_password

from .base import SinkConfigError, StoreError
from .migrations import migrate_postgres
from .readable import ReadableSink
from .table import COLUMNS, ddl, row

__all__ = ["COLUMNS", "SCHEMA", "PostgreSQLSink", "is_postgres_url"]

# The current table, for tools and benchmarks that create one directly; the
# sink itself goes through migrate_postgres, which also upgrades old tables.
SCHEMA = "SELECT pg_advisory_xact_lock(7263011);\n" + ddl("BIGINT")


def is_postgres_url(store: str) -> bool:
    return store.startswith(("postgresql://", "postgres://"))


def _names_a_secret(dsn: str) -> bool:
    """Whether ``dsn`` mentions a secret parameter in either libpq form, so that a dsn
    libpq cannot parse is still refused without quoting libpq's message (which can
    quote the value, as in ``invalid percent-encoded token: "…"``)."""
    split = split_url_password(dsn)
    if split is not None:
        return bool(split.found)
    keys = "|".join(sorted(SECRET_PARAMETERS))
    return re.search(rf"(?i)(^|\s)({keys})\s*=", dsn) is not None


class PostgreSQLSink(ReadableSink):
    """Delivers to and reads a PostgreSQL database given as a libpq URL or key=value string.

    The password never goes in ``dsn``: give ``password_file`` (a mounted
    Secret), or let libpq read ``PGPASSWORD`` or ``PGPASSFILE``. Tools reading
    a store given on a command line pass ``password`` and ``sslpassword`` (see
    :func:`..store.open_store`);
    ``pool_size`` > 0 reads through a pool of that many connections.
    """

    name = "postgresql"
    mark = "%s"
    option_help: ClassVar[dict[str, str]] = {
        "dsn": """The database, as a libpq URL (`postgresql://audit@db:5432/audit?sslmode=verify-full`)
        or key=value string, without a password.""",
        "password_file": """A file holding the password (a mounted Secret); empty: libpq's
        `PGPASSWORD` or `PGPASSFILE`.""",
        "connect_timeout": "Seconds to wait for a connection (default 10).",
        "statement_timeout_ms": "Longest a statement may run, in milliseconds (default 30000).",
    }

    def __init__(
        self,
        dsn: str,
        password_file: str = "",
        connect_timeout: int = 10,
        statement_timeout_ms: int = 30_000,
        name: str | None = None,
        *,
        password: str = "",
        sslpassword: str = "",
        pool_size: int = 0,
    ) -> None:
        super().__init__(name)
        import psycopg.conninfo

        refused = SinkConfigError(
            f"audit sink {self.name}: dsn: must not contain a password (neither "
            "`user:password@` nor a `password` or `sslpassword` parameter); put it in "
            "password_file (a mounted Secret) or the PGPASSWORD environment variable"
        )
        if _names_a_secret(dsn):
            raise refused
        try:
            parsed = psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise SinkConfigError(
                f"audit sink {self.name}: dsn: not a libpq URL ({str(exc).strip()})"
            ) from None
        # libpq's own reading is the last word, whatever spelling slipped past the above.
        if any(parsed.get(key) for key in SECRET_PARAMETERS):
            raise refused
        if password_file and not Path(password_file).is_file():
            raise SinkConfigError(
                f"audit sink {self.name}: password_file: {password_file} is not a file"
            )
        self.dsn = dsn
        self.password_file = password_file
        self.connect_timeout = connect_timeout
        self.statement_timeout_ms = statement_timeout_ms
        self.password = password
        self.sslpassword = sslpassword
        self.pool_size = pool_size
        self._db: Any = None
        self._pool: Any = None

    def _connect(self, timeout: float | None = None) -> Any:
        import psycopg

        extra = self._password()
        statement_ms = int(self.statement_timeout_ms if timeout is None else timeout * 1000)
        return psycopg.connect(
            self.dsn,
            connect_timeout=self.connect_timeout if timeout is None else max(1, round(timeout)),
            application_name="sovereign-hub-audit",
            options=f"-c statement_timeout={statement_ms}",
            **extra,
        )

    def head(self, hub: str, timeout: float) -> dict[str, Any] | None:
        db = self._connect(timeout)
        try:
            migrate_postgres(db)
            found = db.execute(
                "SELECT epoch, seq, mac, time FROM audit_events WHERE hub = %s AND seq > 0 "
                "ORDER BY epoch DESC, seq DESC LIMIT 1",
                (hub,),
            ).fetchone()
        finally:
            db.close()
        if found is None:
            return None
        return dict(zip(("epoch", "seq", "mac", "time"), found, strict=True))

    def open(self) -> None:
        self.close()
        db = self._connect()
        try:
            migrate_postgres(db)
            db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS audit_incoming "
                "(LIKE audit_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            db.commit()
        except Exception:
            db.close()
            raise
        self._db = db

    def deliver(self, records: list[dict[str, Any]]) -> None:
        if self._db is None:
            self.open()
        db = self._db
        try:
            with db.transaction(), db.cursor() as cur:
                with cur.copy(f"COPY audit_incoming ({COLUMNS}) FROM STDIN") as copy:
                    for record in records:
                        copy.write_row(row(record))
                cur.execute(
                    f"INSERT INTO audit_events ({COLUMNS}) "  # noqa: S608 - fixed names
                    f"SELECT {COLUMNS} FROM audit_incoming ORDER BY hub, seq "
                    "ON CONFLICT (id) DO NOTHING"
                )
        except Exception:
            # A broken connection is not reused: the shipper reopens before retrying.
            self.close()
            raise

    def close(self) -> None:
        try:
            if self._db is not None:
                try:
                    self._db.close()
                finally:
                    self._db = None
        finally:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    # -- read side ----------------------------------------------------------------------

    def _password(self) -> dict[str, Any]:
        extra = {"sslpassword": self.sslpassword} if self.sslpassword else {}
        if self.password:
            return extra | {"password": self.password}
        if self.password_file:
            return extra | {"password": Path(self.password_file).read_text().strip()}
        return extra

    def _reading_pool(self) -> Any:
        if self._pool is None:
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool

            kwargs: dict[str, Any] = {"row_factory": dict_row, "connect_timeout": 10}
            self._pool = ConnectionPool(
                self.dsn, min_size=1, max_size=self.pool_size, open=True, timeout=15,
                kwargs=kwargs | self._password(), name="audit-viewer",
            )  # fmt: skip
        return self._pool

    @contextmanager
    def reading(self) -> Iterator[Any]:
        import psycopg

        if self.pool_size:
            from psycopg_pool import PoolTimeout

            try:
                with self._reading_pool().connection() as db:
                    yield db
            except (psycopg.OperationalError, PoolTimeout) as exc:
                raise StoreError(f"cannot reach the audit store ({exc})") from None
            return
        from psycopg.rows import dict_row

        try:
            db = psycopg.connect(
                self.dsn, connect_timeout=10, row_factory=dict_row, **self._password()
            )
        except psycopg.Error as exc:
            raise StoreError(f"{self.dsn}: cannot connect ({exc})") from None
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def maintaining(self) -> Iterator[Any]:
        import psycopg
        from psycopg.rows import dict_row

        try:
            db = psycopg.connect(self.dsn, connect_timeout=10, **self._password())
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the audit store ({exc})") from None
        try:
            # The migration reads plain rows; mapping rows only after it (with them from
            # the start, `sovhub audit retain` on PostgreSQL failed in the migration).
            migrate_postgres(db)
            db.row_factory = dict_row
            yield db
        finally:
            db.close()

    def stream(self, db: Any, sql: str, params: list[Any]) -> Iterable[Any]:
        # A named (server-side) cursor streams a trail of any size in pages.
        with db.transaction(), db.cursor(name="sovhub_audit_read") as cur:
            cur.itersize = 2000
            cur.execute(sql, params)
            yield from cur

    def columns(self, db: Any) -> list[str]:
        return [
            r["column_name"]
            for r in db.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'audit_events' AND table_schema = current_schema()"
            )
        ]

    @contextmanager
    def read_errors(self) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.errors.UndefinedTable:
            raise StoreError(f"{self.dsn}: not an audit store (no audit_events table)") from None
        except psycopg.Error as exc:
            raise StoreError(f"{self.dsn}: {exc}") from None
