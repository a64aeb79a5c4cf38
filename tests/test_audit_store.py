"""Opening a store by location: which plug-in reads it, and what its errors show.

Reading itself is tested per backend where the stores run (SQLite in
test_audit_trail and test_audit_viewer, a real PostgreSQL in test_audit_postgres).
"""

from __future__ import annotations

import sqlite3

import pytest

from sovereign_hub.audit.sinks.base import SinkConfigError
from sovereign_hub.audit.sinks.postgresql import PostgreSQLSink
from sovereign_hub.audit.sinks.sqlite import SQLiteSink
from sovereign_hub.audit.store import StoreError, open_store, read


@pytest.mark.parametrize(
    ("location", "kind", "where"),
    [
        ("/srv/audit.sqlite", SQLiteSink, "/srv/audit.sqlite"),
        ("sqlite:////srv/audit.sqlite", SQLiteSink, "/srv/audit.sqlite"),
        ("postgresql://audit@db:5432/audit", PostgreSQLSink, "postgresql://audit@db:5432/audit"),
        ("postgres://db/audit", PostgreSQLSink, "postgresql://db/audit"),
    ],
)
def test_a_location_opens_its_backends_plug_in(location, kind, where):
    store = open_store(location)
    assert type(store) is kind
    assert str(getattr(store, "path", getattr(store, "dsn", ""))) == where


def test_a_password_in_a_command_line_url_reaches_libpq_but_no_message():
    store = open_store("postgresql://auditor:s3cr%40t@127.0.0.1:1/audit")
    assert isinstance(store, PostgreSQLSink)
    assert store.dsn == "postgresql://auditor@127.0.0.1:1/audit"
    assert store.password == "s3cr@t"
    # Port 1 on loopback refuses at once: the message names the store, not the password.
    with pytest.raises(
        StoreError, match=r"postgresql://auditor@127\.0\.0\.1:1/audit: cannot connect"
    ) as caught:
        list(read("postgresql://auditor:s3cr%40t@127.0.0.1:1/audit"))
    assert "s3cr" not in str(caught.value)


@pytest.mark.parametrize(
    ("location", "reaches_libpq"),
    [
        ("postgresql://audit@127.0.0.1:1/a?password=hunter2", {"password": "hunter2"}),
        ("postgresql://audit@127.0.0.1:1/a?sslpassword=hunter2", {"sslpassword": "hunter2"}),
        (
            "postgresql://audit:hunter2@127.0.0.1:1/a?sslmode=disable&sslpassword=hunter2",
            {"password": "hunter2", "sslpassword": "hunter2"},
        ),
        # libpq's keywords are lower case: it refuses PASSWORD=, quoting only the name.
        ("postgresql://audit@127.0.0.1:1/a?PASSWORD=hunter2", None),
        # libpq's message for bad percent-encoding quotes the whole value.
        ("postgresql://audit@127.0.0.1:1/a?password=hunter2%zz", None),
    ],
)
def test_a_password_in_the_urls_query_reaches_libpq_but_no_message(location, reaches_libpq):
    """Every message on the way (opening, connecting, reading) names the URL without it."""
    texts = []
    try:
        store = open_store(location)
    except StoreError as exc:
        assert reaches_libpq is None
        texts.append(str(exc))
    else:
        assert isinstance(store, PostgreSQLSink)
        assert store.dsn.startswith("postgresql://audit@127.0.0.1:1/a")
        assert {"password": store.password, "sslpassword": store.sslpassword} == {
            "password": "", "sslpassword": "", **(reaches_libpq or {})
        }  # fmt: skip
        for attempt in (store.open, lambda: list(read(location))):
            try:
                attempt()
            except Exception as exc:
                texts.append(str(exc))
    assert texts
    assert all("hunter2" not in text for text in texts), texts


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://audit@db/a?password=hunter2",
        "postgresql://audit@db/a?sslpassword=hunter2",
        "postgresql://audit@db/a?SSLPASSWORD=hunter2",
        "postgresql://audit@db/a?password=hunter2%zz",
        "host=db dbname=a sslpassword=hunter2",
        "host=db dbname=a PASSWORD=hunter2",
        "host=db dbname=a password = 'hunter2",
    ],
)
def test_a_postgresql_sink_refuses_every_secret_parameter_without_quoting_it(dsn):
    with pytest.raises(SinkConfigError, match="must not contain a password") as caught:
        PostgreSQLSink(dsn)
    assert "hunter2" not in str(caught.value)


def test_a_given_password_wins_over_one_in_the_url():
    store = open_store("postgresql://auditor:old@db/audit", password="new")
    assert store.password == "new"  # type: ignore[attr-defined]


def test_missing_and_foreign_files_are_named(tmp_path):
    with pytest.raises(StoreError, match=rf"{tmp_path}/none.sqlite: no such audit store"):
        list(read(str(tmp_path / "none.sqlite")))
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match=r"other.sqlite: not an audit store"):
        list(read(str(other)))
    with pytest.raises(StoreError, match=r"not a libpq URL"):
        open_store("postgresql://db/audit?nosuchoption=1")
