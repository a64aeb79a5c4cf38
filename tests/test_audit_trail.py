"""The audit trail: chain, tamper detection, store outages, a full spool, a killed hub."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sovereign_hub.audit import schemas
from sovereign_hub.audit.checkpoint import SYSTEM_FAMILIES, family_of
from sovereign_hub.audit.sinks import SINKS
from sovereign_hub.audit.sinks.base import Sink
from sovereign_hub.audit.store import read
from sovereign_hub.audit.trail import AuditTrail
from sovereign_hub.audit.verify import verify
from sovereign_hub.reporting import AuditUnavailable

KEY = "test-key-" + "x" * 32


@pytest.fixture(autouse=True)
def hmac_key(monkeypatch):
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", KEY)


def denied(user: str, i: int = 0) -> dict:
    return {
        "actor": user,
        "subject": user,
        "server": "",
        "profile": "gpu-a100",
        "reasons": [{"code": "profile_not_entitled", "message": f"refusal {i}"}],
    }


def events(records) -> list[dict]:
    """The records about users, without the trail's own (epoch start, checkpoints)."""
    return [r for r in records if family_of(r) not in SYSTEM_FAMILIES]


def trail(tmp_path: Path, sinks: list[dict] | None = None, **config) -> AuditTrail:
    if sinks is None:
        sinks = [{"type": "sqlite", "path": str(tmp_path / "audit.sqlite")}]
    return AuditTrail(
        spool_dir=str(tmp_path / "spool"), sinks=sinks, hub_instance="hub-a", **config
    ).start()


def test_events_reach_every_sink_and_the_chain_verifies(tmp_path):
    t = trail(
        tmp_path,
        [
            {"type": "sqlite", "path": str(tmp_path / "a.sqlite")},
            {"type": "jsonl", "path": str(tmp_path / "a.jsonl"), "name": "file"},
        ],
    )
    for i in range(50):
        t.emit(schemas.SPAWN_DENIED, denied("bob", i))
    assert t.drain()
    t.stop()
    for store in ("a.sqlite", "a.jsonl"):
        records = list(read(str(tmp_path / store)))
        # The epoch's first record, the 50 events, the final checkpoint.
        assert [r["seq"] for r in records] == list(range(1, 53))
        assert [family_of(r) for r in (records[0], records[-1])] == ["epoch-started", "checkpoint"]
        assert len(events(records)) == 50
        report = verify(records, KEY.encode())
        assert report.proven, (report.findings, report.caveats)
        assert report.verified_through == {"hub-a": 52}


def test_chain_continues_across_restarts(tmp_path):
    t = trail(tmp_path)
    for i in range(3):
        t.emit(schemas.SPAWN_DENIED, denied("bob", i))
    t.drain()
    t.stop()
    t = trail(tmp_path)
    t.emit(schemas.LOGOUT, {"actor": "bob", "subject": "bob"})
    t.drain()
    t.stop()
    records = list(read(str(tmp_path / "audit.sqlite")))
    # epoch start, 3 events, final checkpoint; then the same epoch goes on.
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6, 7]
    assert len({r["epoch"] for r in records}) == 1
    assert records[5]["prev"] == records[4]["mac"]
    assert verify(records, KEY.encode()).proven


def test_invalid_events_are_refused_at_the_emit_site(tmp_path):
    t = trail(tmp_path)
    with pytest.raises(ValueError, match=r"must not contain|additional"):
        t.emit(schemas.LOGIN, {"actor": "a", "subject": "a", "token": "secret"})
    t.stop()


@pytest.fixture
def export(tmp_path) -> list[dict]:
    t = trail(tmp_path, [{"type": "jsonl", "path": str(tmp_path / "x.jsonl")}])
    for i in range(10):
        t.emit(schemas.SPAWN_DENIED, denied("bob", i))
    t.drain()
    t.stop()
    return [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]


def kinds(records) -> list[tuple[str, int]]:
    return [(f.kind, f.seq) for f in verify(records, KEY.encode()).findings]


def test_tamper_change_is_caught_at_the_record(export):
    export[4]["data"]["subject"] = "mallory"
    assert kinds(export) == [("changed", 5)]


def test_tamper_drop_names_the_missing_records(export):
    del export[6]
    assert kinds(export) == [("dropped", 7)]
    del export[2:4]
    assert kinds(export)[0] == ("dropped", 3)


def test_tamper_insert_is_caught(export):
    forged = dict(export[3], seq=5, id="forged", data={**export[3]["data"], "subject": "mallory"})
    export.insert(4, forged)
    findings = kinds(export)
    assert ("changed", 5) in findings or ("inserted", 5) in findings
    assert findings


def test_tamper_reorder_is_caught(export):
    export[2], export[5] = export[5], export[2]
    found = {k for k, _ in kinds(export)}
    assert "reordered" in found


def test_tamper_in_sqlite_is_caught(tmp_path):
    t = trail(tmp_path)
    for i in range(10):
        t.emit(schemas.SPAWN_DENIED, denied("bob", i))
    t.drain()
    t.stop()
    db = sqlite3.connect(tmp_path / "audit.sqlite")
    db.execute(
        "UPDATE audit_events SET data = replace(data, 'refusal 3', 'nothing to see') WHERE seq = 5"
    )
    db.execute("DELETE FROM audit_events WHERE seq = 8")
    db.commit()
    db.close()
    assert kinds(read(str(tmp_path / "audit.sqlite"))) == [("changed", 5), ("dropped", 8)]


def test_verify_cli_reports_the_break(tmp_path, export):
    (tmp_path / "tampered.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in export[:5] + export[6:])
    )
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("sovhub")),
            "audit",
            "verify",
            str(tmp_path / "tampered.jsonl"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "SOVEREIGN_AUDIT_HMAC_KEY": KEY},
        check=False,
    )
    assert result.returncode == 1
    epoch = export[0]["epoch"]
    assert f"[dropped] records hub-a epoch {epoch}#6 are missing before #7" in result.stdout


class Outage(Sink):
    """A store that is down until ``up_at`` (a timestamp), recording what it receives."""

    received: ClassVar[list[dict]] = []
    up_at: ClassVar[float] = 0.0

    def deliver(self, records):
        if time.time() < Outage.up_at:
            raise ConnectionError("store unreachable")
        Outage.received.extend(records)


@pytest.fixture
def outage(monkeypatch):
    monkeypatch.setitem(SINKS, "outage", Outage)
    Outage.received = []
    return Outage


def test_a_store_outage_delays_and_loses_nothing(tmp_path, outage):
    outage.up_at = time.time() + 1.5
    t = trail(tmp_path, [{"type": "outage", "name": "flaky"}])
    start = time.perf_counter()
    for i in range(2000):
        t.emit(schemas.SPAWN_DENIED, denied("bob", i))
    assert time.perf_counter() - start < 1.0  # emitting never waited on the store
    assert outage.received == []
    assert t.drain(timeout=20)
    t.stop()
    received = outage.received
    assert [r["seq"] for r in received] == list(range(1, len(received) + 1))
    assert len(events(received)) == 2000
    assert verify(received, KEY.encode()).proven
    assert t.shippers[0].failures >= 1


def test_spool_full_fail_closed_refuses_then_recovers(tmp_path, outage):
    outage.up_at = time.time() + 3600
    t = trail(tmp_path, [{"type": "outage", "name": "down"}], spool_limit_bytes=20_000)

    def flood():
        for i in range(1000):
            t.emit(schemas.SPAWN_DENIED, denied("bob", i))

    with pytest.raises(AuditUnavailable, match="spool is full"):
        flood()
    accepted = t.seq
    assert 20 < accepted < 1000
    outage.up_at = 0
    assert t.drain(timeout=20)
    time.sleep(1.1)  # the spool is measured at most once a second
    t.emit(schemas.LOGOUT, {"actor": "bob", "subject": "bob"})  # room again
    t.stop()


def test_spool_full_fail_open_drops_with_an_alert(tmp_path, outage, caplog):
    outage.up_at = time.time() + 3600
    t = trail(
        tmp_path,
        [{"type": "outage", "name": "down"}],
        spool_limit_bytes=20_000,
        on_spool_full="fail-open",
    )
    results = [t.emit(schemas.SPAWN_DENIED, denied("bob", i)) for i in range(1000)]
    assert None in results  # dropped, not raised
    assert any("audit spool full" in r.message for r in caplog.records)
    t.stop()


EMITTER = textwrap.dedent(
    """
    import sys, time
    from sovereign_hub.audit import schemas
from sovereign_hub.audit.checkpoint import SYSTEM_FAMILIES, family_of
    from sovereign_hub.audit.trail import AuditTrail
    t = AuditTrail(spool_dir=sys.argv[1], sinks=[{"type": "sqlite", "path": sys.argv[2]}], hub_instance="hub-a").start()
    i = 0
    while True:
        t.emit(schemas.LOGOUT, {"actor": f"u{i}", "subject": f"u{i}"})
        i += 1
        if i % 50 == 0:
            print(t.seq, flush=True)
            time.sleep(0.005)
    """
)


def test_a_killed_hub_loses_nothing_it_emitted(tmp_path):
    spool, db = tmp_path / "spool", tmp_path / "audit.sqlite"
    env = {**os.environ, "SOVEREIGN_AUDIT_HMAC_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-c", EMITTER, str(spool), str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    last = 0
    for line in proc.stdout:  # type: ignore[union-attr]
        last = int(line)
        if last >= 3000:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Restarted, the trail delivers what the killed one had not.
    t = trail(tmp_path, [{"type": "sqlite", "path": str(db)}])
    emitted = t.seq
    assert emitted >= last
    assert t.drain(timeout=30)
    t.stop()
    records = list(read(str(db)))
    # none lost, none twice, and the final checkpoint of the restarted trail
    assert [r["seq"] for r in records] == list(range(1, emitted + 2))
    assert verify(records, KEY.encode()).proven


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_the_canonical_form_is_sorted_compact_utf8_json(value):
    """orjson's output is byte for byte json.dumps(sort_keys, compact, ensure_ascii=False)."""
    from sovereign_hub.audit.chain import canonical

    try:
        expected = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except UnicodeEncodeError:  # a lone surrogate: neither can encode it
        with pytest.raises((TypeError, ValueError)):
            canonical(value)
        return
    assert canonical(value) == expected
