"""Reading records back from a store or an export, for verification, queries and exports.

A database is read through its store plug-in (:mod:`.sinks.readable`), the
same code that writes it; a JSON-lines export is read here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sovereign_hub.dburl import SECRET_PARAMETERS, split_password

from .sinks.base import SinkConfigError, StoreError
from .sinks.postgresql import PostgreSQLSink, is_postgres_url
from .sinks.readable import ReadableSink
from .sinks.sqlite import SQLiteSink
from .sinks.table import Filters, clauses, record_from_row


def open_store(location: str, password: str = "", pool_size: int = 0) -> ReadableSink:
    """The store plug-in for ``location``: a PostgreSQL URL (``postgresql://…``) or a
    SQLite file (or ``sqlite:///path``). ``pool_size`` > 0 keeps that many PostgreSQL
    connections open.

    A secret in the URL (``user:pw@``, ``?password=``, ``?sslpassword=``), or
    ``password``, reaches libpq but no message: the sink keeps the URL without them
    (:func:`sovereign_hub.dburl.split_password`, the parser ``sovhub hub-db`` uses too).
    """
    split = split_password(location)
    if split is None:
        return SQLiteSink(location)
    try:
        sink = PostgreSQLSink(split.url, pool_size=pool_size)
    except SinkConfigError as exc:
        raise StoreError(f"{split.url}: {exc}") from None
    secrets = _secrets(location, split.url) if split.found else {}
    sink.password = password or secrets.get("password", "")
    sink.sslpassword = secrets.get("sslpassword", "")
    return sink


def shown(location: str) -> str:
    """``location`` as a message may show it: a PostgreSQL URL without any password."""
    split = split_password(location)
    return location if split is None else split.url


def _secrets(location: str, clean: str) -> dict[str, str]:
    """The secrets of ``location`` as libpq decodes them (percent-decoding, no ``+``)."""
    import psycopg.conninfo

    try:
        parsed = psycopg.conninfo.conninfo_to_dict(location)
    except psycopg.ProgrammingError:
        # libpq's message can quote the undecodable value, that is the password itself.
        raise StoreError(
            f"{clean}: libpq cannot read the password in this URL (not valid URL "
            "encoding, or a parameter libpq does not take); its message is not shown "
            "as it may quote the password"
        ) from None
    return {k: str(v) for k, v in parsed.items() if k in SECRET_PARAMETERS and v}


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
    path = Path(store.removeprefix("sqlite:///"))
    if is_postgres_url(store) or path.suffix not in (".jsonl", ".json", ".ndjson"):
        backend = open_store(store, password)
        try:
            yield from backend.records(filters)
        finally:
            backend.close()
        return
    if not path.exists():
        raise StoreError(f"{store}: no such audit store")
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


__all__ = [
    "Filters", "StoreError", "clauses", "open_store", "read", "record_from_row", "shown",
]  # fmt: skip
