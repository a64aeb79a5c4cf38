"""The audit table's versions: a store written by the first release is upgraded in place.

SQLite here; the same upgrade on a real PostgreSQL server is in
test_audit_postgres.py. The version-1 table and its rows are built exactly as
the first release wrote them (its DDL, its record format without epoch or key
id), so the upgrade meets what operators have on disk.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from sovereign_hub.audit import schemas
from sovereign_hub.audit.chain import GENESIS, canonical, seal
from sovereign_hub.audit.checkpoint import family_of
from sovereign_hub.audit.sinks.migrations import SchemaTooNew
from sovereign_hub.audit.sinks.sqlite import SQLiteSink
from sovereign_hub.audit.spool import Spool
from sovereign_hub.audit.store import read
from sovereign_hub.audit.trail import AuditTrail
from sovereign_hub.audit.verify import verify

KEY = "migration-test-key-" + "m" * 32

# The first release's table, as its sinks created it.
V1_DDL = """
CREATE TABLE IF NOT EXISTS audit_events (
    id TEXT PRIMARY KEY, hub TEXT NOT NULL, seq {bigint} NOT NULL, time TEXT NOT NULL,
    schema TEXT NOT NULL, version TEXT NOT NULL, event TEXT NOT NULL, actor TEXT,
    subject TEXT, region TEXT, digest TEXT, data TEXT NOT NULL, prev TEXT NOT NULL,
    mac TEXT NOT NULL,
    UNIQUE (hub, seq)
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time, id);
CREATE INDEX IF NOT EXISTS audit_events_subject ON audit_events (subject, time, id);
"""


V1_INSERT = "INSERT INTO audit_events VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"


@pytest.fixture(autouse=True)
def hmac_key(monkeypatch):
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", KEY)


def legacy_chain(hub: str, n: int, key: str = KEY) -> list[dict]:
    """Records as the first release sealed them: no epoch, no key id."""
    out, prev = [], GENESIS
    for seq in range(1, n + 1):
        record = {
            "seq": seq, "id": str(uuid.uuid4()), "time": f"2026-11-01T10:00:{seq % 60:02d}.000000Z",
            "hub": hub, "schema": schemas.LOGOUT, "version": "1",
            "data": {"actor": "ana", "subject": "ana"}, "prev": prev,
        }  # fmt: skip
        record["mac"] = prev = seal(record, key.encode())
        out.append(record)
    return out


def v1_rows(records: list[dict]) -> list[tuple]:
    return [
        (r["id"], r["hub"], r["seq"], r["time"], r["schema"], r["version"], "logout",
         r["data"]["actor"], r["data"]["subject"], None, None,
         json.dumps(r["data"], sort_keys=True), r["prev"], r["mac"])
        for r in records
    ]  # fmt: skip


def v1_sqlite(path: Path, records: list[dict]) -> None:
    db = sqlite3.connect(path)
    db.executescript(V1_DDL.format(bigint="INTEGER"))
    db.executemany(V1_INSERT.replace("%s", "?"), v1_rows(records))
    db.commit()
    db.close()


def test_a_version_1_store_is_upgraded_in_place_and_a_lost_spool_continues_in_a_new_epoch(
    tmp_path,
):
    store = tmp_path / "audit.sqlite"
    legacy = legacy_chain("hub-a", 30)
    v1_sqlite(store, legacy)
    assert verify(read(str(store)), KEY.encode()).ok  # the old tools' reading still works
    t = AuditTrail(
        spool_dir=str(tmp_path / "spool"), hub_instance="hub-a",
        sinks=[{"type": "sqlite", "path": str(store)}],
    ).start()  # fmt: skip
    for _ in range(5):
        t.emit(schemas.LOGOUT, {"actor": "bob", "subject": "bob"})
    assert t.drain()
    t.stop()
    db = sqlite3.connect(store)
    assert db.execute("SELECT version FROM audit_schema").fetchall() == [(2,)]
    assert db.execute("SELECT count(*) FROM audit_events WHERE epoch = ''").fetchone() == (30,)
    # (hub, seq) is no longer unique across epochs; (hub, epoch, seq) is.
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        db.execute(
            "INSERT INTO audit_events (id, hub, seq, time, schema, version, event, data, prev, "
            "mac, epoch) VALUES ('x', 'hub-a', 5, 't', 's', '1', 'logout', '{}', '', '', '')"
        )
    db.close()
    records = list(read(str(store)))
    assert records[:30] == legacy  # every old record kept, byte for byte what its MAC covers
    start = records[30]
    assert family_of(start) == "epoch-started"
    assert start["data"] == {
        "actor": "system", "subject": "", "previous_state": "found", "previous_epoch": "",
        "previous_seq": 30, "previous_mac": legacy[-1]["mac"],
        "previous_time": legacy[-1]["time"], "looked_in": "sqlite",
        "every_records": 1000, "every_seconds": 60,
    }  # fmt: skip
    report = verify(records, KEY.encode())
    assert report.proven, (report.findings, report.caveats)
    assert any("ended at hub-a #30" in note for note in report.notes)


def test_an_upgraded_hub_with_its_spool_continues_the_old_chain(tmp_path):
    """The first release's spool holds #1..#30; its store has #1..#25. Nothing breaks."""
    store, spool_dir = tmp_path / "audit.sqlite", tmp_path / "spool"
    legacy = legacy_chain("hub-a", 30)
    v1_sqlite(store, legacy[:25])
    spool = Spool(spool_dir)
    for record in legacy:
        spool.append(canonical(record) + b"\n", record["seq"])
    spool.ack("sqlite", 25)
    spool.close()
    t = AuditTrail(
        spool_dir=str(spool_dir), hub_instance="hub-a",
        sinks=[{"type": "sqlite", "path": str(store)}],
    ).start()  # fmt: skip
    assert (t.seq, t.epoch) == (30, "")
    t.emit(schemas.LOGOUT, {"actor": "bob", "subject": "bob"})
    assert t.drain()
    t.stop()
    records = list(read(str(store)))
    assert [r["seq"] for r in records] == list(range(1, 33))  # + the event, the checkpoint
    assert {r.get("epoch", "") for r in records} == {""}
    assert records[30]["prev"] == legacy[-1]["mac"]
    checkpoint = records[-1]["data"]
    assert (checkpoint["first_seq"], checkpoint["last_seq"]) == (1, 31)  # rehashed from the spool
    assert verify(records, KEY.encode()).proven


def test_a_table_newer_than_the_code_is_refused_not_written(tmp_path):
    store = tmp_path / "audit.sqlite"
    sink = SQLiteSink(str(store))
    sink.open()
    sink.close()
    db = sqlite3.connect(store)
    db.execute("UPDATE audit_schema SET version = 9")
    db.commit()
    db.close()
    with pytest.raises(SchemaTooNew, match=r"version 9, newer than .* \(2\)"):
        SQLiteSink(str(store)).open()
