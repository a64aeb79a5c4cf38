"""The PostgreSQL audit sink against a real PostgreSQL 15 server on 127.0.0.1.

Delivery, deduplication, tamper detection, a 30-second outage in a stream of
10,000 events, a slow (locked) store, and `sovhub audit` against a URL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from sovereign_hub.audit import schemas
from sovereign_hub.audit.retention import retain
from sovereign_hub.audit.signing import PublicKeys, Signer, new_private_key_pem
from sovereign_hub.audit.sinks import SinkConfigError, make_sink
from sovereign_hub.audit.sinks.postgresql import PostgreSQLSink
from sovereign_hub.audit.store import Filters, read
from sovereign_hub.audit.trail import AuditTrail
from sovereign_hub.audit.verify import verify
from sovereign_hub.audit.viewer.query import Query, Store
from sovereign_hub.sandbox.postgres import LocalPostgres
from tests.conftest import require_postgres
from tests.test_audit_migrations import V1_DDL, V1_INSERT, legacy_chain, v1_rows

KEY = "pg-test-key-" + "k" * 32
RECORD = {
    "seq": 1, "time": "2026-11-26T10:00:00.000000Z", "hub": "hub-pw",
    "schema": "https://sovereign-hub.io/events/logout/v1", "version": "1",
    "data": {"actor": "ana", "subject": "ana"}, "prev": "0" * 64, "mac": "m" * 64,
}  # fmt: skip
SOVHUB = str(Path(sys.executable).with_name("sovhub"))
EVENTS = (
    "SELECT count(*), count(DISTINCT id) FROM audit_events "
    "WHERE event NOT IN ('epoch-started', 'checkpoint')"
)


@pytest.fixture(autouse=True)
def hmac_key(monkeypatch):
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", KEY)


def started(user: str, region: str = "eu", i: int = 0) -> dict:
    return {
        "actor": user,
        "subject": user,
        "server": "",
        "profile": "cpu-small",
        "region": region,
        "image": "quay.io/jupyter/base-notebook@sha256:" + f"{i % 10}" * 64,
        "digest": "sha256:" + f"{i % 10}" * 64,
        "gpus": 0,
        "gpu_type": "",
        "node": f"{region}-cpu-1",
        "cluster": "hub",
    }


def pg_trail(tmp_path: Path, url: str, **config) -> AuditTrail:
    return AuditTrail(
        spool_dir=str(tmp_path / "spool"),
        sinks=[{"type": "postgresql", "dsn": url}],
        hub_instance="hub-pg",
        **config,
    ).start()


def count(url: str, sql: str = "SELECT count(*), count(DISTINCT id) FROM audit_events") -> tuple:
    with psycopg.connect(url) as db:
        return db.execute(sql).fetchone()


def test_events_land_in_postgresql_and_the_chain_verifies(tmp_path, pg_url):
    t = pg_trail(tmp_path, pg_url)
    for i in range(200):
        t.emit(
            schemas.SERVER_STARTED, started("ana" if i % 2 else "bob", "eu" if i % 4 else "us", i)
        )
    assert t.drain()
    t.stop()
    # 200 events, the epoch's first record and the final checkpoint
    assert count(pg_url) == (202, 202)
    records = list(read(pg_url))
    assert [r["seq"] for r in records] == list(range(1, 203))
    report = verify(records, KEY.encode())
    assert report.proven, (report.findings, report.caveats)
    assert report.verified_through == {"hub-pg": 202}
    us_bob = list(read(pg_url, Filters(user="bob", region="us", event="server-started")))
    assert us_bob
    assert all(r["data"]["subject"] == "bob" and r["data"]["region"] == "us" for r in us_bob)
    assert len(us_bob) == 50


def test_hostile_text_in_a_filter_column_does_not_block_delivery(tmp_path, pg_url):
    """PostgreSQL's text type refuses NUL: a spawn-denied event whose region a user sent as
    "eu\\x00" made every batch holding it fail, for ever. The filter column now carries it
    escaped; the record's JSON keeps it exactly, so the chain verifies."""
    t = pg_trail(tmp_path, pg_url)
    hostile = {
        "actor": "mallory", "subject": "mallory\x00", "server": "", "region": "eu\x00",
        "profile": "\ud800", "reasons": [{"code": "unknown_region", "message": "eu\x00"}],
    }  # fmt: skip
    t.emit(schemas.SPAWN_DENIED, hostile)
    t.emit(schemas.SERVER_STARTED, started("ana"))
    assert t.drain()
    t.stop()
    records = list(read(pg_url))
    denied = [r for r in records if r["schema"] == schemas.SPAWN_DENIED]
    assert denied[0]["data"]["region"] == "eu\x00"
    assert verify(records, KEY.encode()).ok


def test_a_batch_delivered_twice_is_stored_once(pg_url, tmp_path):
    t = pg_trail(tmp_path, pg_url)
    for i in range(10):
        t.emit(schemas.SERVER_STARTED, started("ana", i=i))
    assert t.drain()
    t.stop()
    records = list(read(pg_url))
    sink = PostgreSQLSink(pg_url)
    sink.deliver(records)  # an acknowledgement lost: the shipper re-sends the batch
    sink.deliver(records[3:7])
    sink.close()
    assert count(pg_url) == (12, 12)


def test_a_forged_record_claiming_a_stored_sequence_number_is_refused(pg_url, tmp_path):
    t = pg_trail(tmp_path, pg_url)
    t.emit(schemas.SERVER_STARTED, started("ana"))
    assert t.drain()
    t.stop()
    _, record, _ = read(pg_url)  # epoch start, the event, the final checkpoint
    forged = dict(record, id="00000000-0000-4000-8000-000000000000")
    sink = PostgreSQLSink(pg_url)
    with pytest.raises(psycopg.errors.UniqueViolation):
        sink.deliver([forged])
    sink.close()
    assert count(pg_url) == (3, 3)


def test_tampering_in_postgresql_is_caught_at_the_record(tmp_path, pg_url):
    t = pg_trail(tmp_path, pg_url)
    for i in range(20):
        t.emit(schemas.SERVER_STARTED, started("ana", i=i))
    assert t.drain()
    t.stop()
    with psycopg.connect(pg_url) as db:
        db.execute("UPDATE audit_events SET data = replace(data, '\"eu\"', '\"us\"') WHERE seq = 7")
        db.execute("DELETE FROM audit_events WHERE seq = 12")
    result = subprocess.run(
        [SOVHUB, "audit", "verify", pg_url, "--json"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr
    findings = {(f["kind"], f["seq"]) for f in json.loads(result.stdout)["findings"]}
    assert ("changed", 7) in findings
    assert any(kind == "dropped" and seq in (12, 13) for kind, seq in findings)


def test_sovhub_audit_query_and_export_read_postgresql(tmp_path, pg_url):
    t = pg_trail(tmp_path, pg_url)
    for i in range(30):
        t.emit(schemas.SERVER_STARTED, started("ana" if i < 10 else "carol", i=i))
    assert t.drain()
    t.stop()
    query = subprocess.run(
        [SOVHUB, "audit", "query", pg_url, "--user", "ana", "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lines = [json.loads(line) for line in query.stdout.splitlines()]
    assert len(lines) == 10
    assert {r["data"]["subject"] for r in lines} == {"ana"}
    export = tmp_path / "export.jsonl"
    with open(export, "w") as out:
        subprocess.run([SOVHUB, "audit", "export", pg_url], stdout=out, check=True, timeout=60)
    assert verify(read(str(export)), KEY.encode()).ok
    # A password in the URL (ignored by this trust-auth server) reaches no output.
    secret = pg_url.replace("postgres@", "postgres:hunter2@") + "?sslpassword=hunter3"
    runs = {
        command: subprocess.run(
            [SOVHUB, "audit", command, secret], capture_output=True, text=True, timeout=60
        )
        for command in ("verify", "query")
    }
    for run in runs.values():
        assert run.returncode == 0, run.stderr
        assert "hunter" not in run.stdout + run.stderr
    assert runs["verify"].stdout.startswith(f"{pg_url}: ")
    assert "carol" in runs["query"].stdout
    missing = subprocess.run(
        [SOVHUB, "audit", "query", pg_url.rsplit("/", 1)[0] + "/no_such_db"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2
    assert "cannot connect" in missing.stderr
    assert "no_such_db" in missing.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"dsn": "postgresql://audit:hunter2@db/audit"}, "must not contain a password"),
        ({"dsn": "this is not a dsn"}, "not a libpq URL"),
        ({"dsn": "postgresql://db/audit", "password_file": "/no/such/file"}, "password_file"),
        ({"dsn": "postgresql://db/audit", "colour": "red"}, "colour"),
    ],
)
def test_a_misconfigured_postgresql_sink_names_the_option(spec, message):
    with pytest.raises(SinkConfigError, match=message) as caught:
        make_sink({"type": "postgresql", **spec})
    assert "hunter2" not in str(caught.value)


def test_the_password_comes_from_a_file(tmp_path, postgres_server, pg_url):
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("CREATE ROLE auditwriter LOGIN PASSWORD 's3cret-pass'")
        db.execute(f"GRANT ALL ON DATABASE {pg_url.rsplit('/', 1)[1]} TO auditwriter")
        db.execute("GRANT ALL ON SCHEMA public TO auditwriter")
    postgres_server.require_password("auditwriter")
    secret = tmp_path / "password"
    secret.write_text("s3cret-pass\n")
    url = pg_url.replace("postgres@", "auditwriter@")
    sink = make_sink({"type": "postgresql", "dsn": url, "password_file": str(secret)})
    sink.deliver([{**RECORD, "id": "11111111-1111-4111-8111-111111111111"}])
    sink.close()
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    refused = make_sink({"type": "postgresql", "dsn": url, "password_file": str(wrong)})
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        refused.open()
    # The review tools and the audit viewer read with the same password.
    assert [r["seq"] for r in read(url, password="s3cret-pass")] == [1]
    viewer = Store(url, str(secret))
    try:
        assert viewer.page(Query())[0][0]["seq"] == 1
    finally:
        viewer.close()


def test_postgresql_stopped_for_30_seconds_loses_and_duplicates_nothing(tmp_path):
    """10,000 events; the server is stopped for 30 s in the middle of the stream."""
    require_postgres()
    with LocalPostgres() as server:
        t = pg_trail(tmp_path, server.url, retry_max_seconds=2.0)
        for i in range(3000):
            t.emit(schemas.SERVER_STARTED, started(f"user{i % 37}", i=i))
        assert t.drain(timeout=60)
        delivered_before = t.seq
        server.stop(mode="immediate")  # as a crash: no clean shutdown of sessions
        down_at = time.monotonic()
        emitted_while_down = 0
        while time.monotonic() - down_at < 30:
            for _ in range(250):
                t.emit(schemas.SERVER_STARTED, started("dora", i=emitted_while_down))
                emitted_while_down += 1
            time.sleep(1)
            if emitted_while_down >= 6000:
                break
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
        assert t.shippers[0].failures > 0
        # nothing acknowledged while the store was down
        assert t.shippers[0].acked == delivered_before
        server.start()
        for i in range(10_000 - 3000 - emitted_while_down):
            t.emit(schemas.SERVER_STARTED, started("erin", i=i))
        assert t.emitted == 10_000
        assert t.drain(timeout=120)
        t.stop()
        assert count(server.url, EVENTS) == (10_000, 10_000)
        written = t.seq  # the events, the epoch's first record and the checkpoints
        assert count(server.url) == (written, written)
        assert count(server.url, "SELECT min(seq), max(seq) FROM audit_events") == (1, written)
        assert verify(read(server.url), KEY.encode()).proven


def test_a_slow_store_delays_delivery_but_never_the_emitter(tmp_path, pg_url):
    """The table is locked by another session for 3 s: emits stay fast, delivery waits."""
    t = pg_trail(tmp_path, pg_url)
    t.emit(schemas.SERVER_STARTED, started("ana"))
    assert t.drain()
    locked = threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(pg_url) as db, db.transaction():
            db.execute("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
            locked.set()
            time.sleep(3)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(10)
    slowest = 0.0
    for i in range(500):
        t0 = time.perf_counter()
        t.emit(schemas.SERVER_STARTED, started("ana", i=i))
        slowest = max(slowest, time.perf_counter() - t0)
    assert slowest < 0.5  # a generous bound: the store's 3 s wait never reaches the emitter
    assert t.shippers[0].acked == 2  # the batch waits on the lock (after epoch start, event)
    holder.join()
    assert t.drain(timeout=30)
    t.stop()
    assert count(pg_url, EVENTS) == (501, 501)


def test_a_running_hub_that_loses_its_spool_resumes_delivery_in_a_new_epoch(tmp_path, pg_url):
    """The spool of a running trail is deleted (an emptyDir gone with its pod).

    Before epochs, the restarted hub began again at seq 1 under the same name,
    PostgreSQL refused every record for ever, the spool filled and, fail-closed,
    logins stopped. Now delivery resumes and `verify` names the boundary.
    """
    private, public = tmp_path / "signing.pem", tmp_path / "signing.pub"
    key, pub, _ = new_private_key_pem()
    private.write_bytes(key)
    public.write_bytes(pub)
    first = pg_trail(tmp_path, pg_url, signing_key_file=str(private))
    for i in range(40):
        first.emit(schemas.SERVER_STARTED, started("ana", i=i))
    assert first.drain()
    stored_end = first.seq
    shutil.rmtree(tmp_path / "spool")  # the volume goes while the hub runs
    for i in range(5):  # written into the deleted spool: lost with it
        first.emit(schemas.SERVER_STARTED, started("lost", i=i))
    first.stop(final_delivery_timeout=0.5)
    second = pg_trail(tmp_path, pg_url, signing_key_file=str(private))
    assert second.epoch != first.epoch
    for i in range(400):
        second.emit(schemas.SERVER_STARTED, started("bob", i=i))
    assert second.drain(timeout=60)
    assert second.shippers[0].failures == 0  # not one refusal by the store
    second.stop()
    records = list(read(pg_url))
    start = next(r for r in records if r.get("epoch") == second.epoch and r["seq"] == 1)
    assert start["data"]["previous_state"] == "found"
    assert (start["data"]["previous_epoch"], start["data"]["previous_seq"]) == (
        first.epoch,
        stored_end,
    )
    assert count(pg_url, EVENTS + " AND subject = 'bob'") == (400, 400)
    env = {k: v for k, v in os.environ.items() if k != "SOVEREIGN_AUDIT_HMAC_KEY"}
    result = subprocess.run(
        [SOVHUB, "audit", "verify", pg_url, "--public-key", str(public)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    # The lost spool took the first epoch's first checkpoint with it: no digest signed by
    # the key covers its 41 records, so the key alone does not prove them (exit 3), though
    # their links are intact and the second, signed epoch names their end.
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"records #1..#{stored_end}, chain intact, not provable by key" in result.stdout
    result = subprocess.run(
        [SOVHUB, "audit", "verify", pg_url, "--public-key", str(public),
         "--allow-unsigned-prefix"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"[boundary] hub-pg epoch {second.epoch} began at" in result.stdout
    assert f"ended at hub-pg epoch {first.epoch} #{stored_end}, as postgresql showed" in (
        result.stdout
    )
    assert verify(read(pg_url), KEY.encode()).proven


def test_a_hub_starting_while_postgresql_is_down_starts_anyway_and_delivers_later(tmp_path):
    """No chain position and no store: the epoch's predecessor is 'unknown', never an outage."""
    require_postgres()
    with LocalPostgres() as server:
        first = pg_trail(tmp_path, server.url)
        first.emit(schemas.SERVER_STARTED, started("ana"))
        assert first.drain()
        first.stop()
        shutil.rmtree(tmp_path / "spool")
        server.stop(mode="immediate")
        began = time.monotonic()
        second = pg_trail(tmp_path, server.url, epoch_lookup_timeout=1.0, retry_max_seconds=0.5)
        assert time.monotonic() - began < 10
        second.emit(schemas.SERVER_STARTED, started("bob"))  # accepted while the store is down
        server.start()
        assert second.drain(timeout=60)
        second.stop()
        records = list(read(server.url))
    start = next(r for r in records if r.get("epoch") == second.epoch and r["seq"] == 1)
    assert start["data"]["previous_state"] == "unknown"
    assert "unreachable: postgresql" in start["data"]["looked_in"]
    report = verify(records, KEY.encode())
    assert report.ok, report.findings
    assert any("without knowing where the chain before it ended" in n for n in report.notes)


def test_a_version_1_table_is_upgraded_in_place(tmp_path, pg_url):
    """The first release's table, with rows, is migrated when a sink opens it."""
    legacy = legacy_chain("hub-pg", 20, KEY)
    with psycopg.connect(pg_url) as db:
        db.execute(V1_DDL.format(bigint="BIGINT"))
        with db.cursor() as cur:
            cur.executemany(V1_INSERT, v1_rows(legacy))
    t = pg_trail(tmp_path, pg_url)
    t.emit(schemas.SERVER_STARTED, started("ana"))
    assert t.drain()
    t.stop()
    with psycopg.connect(pg_url) as db:
        assert db.execute("SELECT version FROM audit_schema").fetchall() == [(2,)]
        constraints = {
            name
            for (name,) in db.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'audit_events'::regclass"
            )
        }
    assert "audit_events_hub_epoch_seq_key" in constraints
    assert "audit_events_hub_seq_key" not in constraints
    records = list(read(pg_url))
    assert records[:20] == legacy
    assert records[20]["data"]["previous_seq"] == 20
    assert verify(records, KEY.encode()).proven


def test_retention_in_postgresql_removes_whole_ranges_and_the_chain_verifies(tmp_path, pg_url):
    """`sovhub audit retain` on PostgreSQL, through the store plug-in's read-write
    connection (the SQLite case, with tampering, is in test_audit_checkpoints)."""
    private, public, _ = new_private_key_pem()
    (tmp_path / "signing.pem").write_bytes(private)
    (tmp_path / "signing.pub").write_bytes(public)

    def run(n: int) -> None:
        trail = pg_trail(
            tmp_path, pg_url, signing_key_file=str(tmp_path / "signing.pem"),
            checkpoint_every_records=20,
        )  # fmt: skip
        for i in range(n):
            trail.emit(schemas.LOGOUT, {"actor": f"user{i}", "subject": f"user{i}"})
        assert trail.drain()
        trail.stop()

    run(60)
    cutoff = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    time.sleep(0.05)
    run(15)
    before = list(read(pg_url))
    (note,) = retain(pg_url, cutoff, Signer.from_file(tmp_path / "signing.pem"), actor="ops")
    after = list(read(pg_url))
    assert after[0]["id"] == note["id"]
    through = note["data"]["through_seq"]
    assert schemas.family(next(r for r in before if r["seq"] == through)["schema"]) == "checkpoint"
    assert [r["seq"] for r in after[1:]] == [r["seq"] for r in before if r["seq"] > through]
    report = verify(after, KEY.encode(), PublicKeys.from_files([tmp_path / "signing.pub"]))
    assert report.ok, report.findings
    assert any(f"#1..#{through} were removed by retention" in n for n in report.notes)
