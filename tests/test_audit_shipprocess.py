"""Shippers in their own process (`AuditTrail.shipping = "process"`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sovereign_hub.audit import schemas
from sovereign_hub.audit.store import read
from sovereign_hub.audit.trail import AuditTrail
from sovereign_hub.audit.verify import verify
from tests.receivers import Receiver, Request

KEY = "shipprocess-key-" + "p" * 32


@pytest.fixture(autouse=True)
def hmac_key(monkeypatch):
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", KEY)


def logout(user: str) -> dict:
    return {"actor": user, "subject": user}


def shipper_pids(spool: Path) -> list[int]:
    settings = str(spool / "shippers.json")
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if settings in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_a_shipper_process_delivers_and_stops_with_the_trail(tmp_path):
    trail = AuditTrail(
        spool_dir=str(tmp_path / "spool"), hub_instance="hub-p", shipping="process",
        sinks=[{"type": "sqlite", "path": str(tmp_path / "a.sqlite")},
               {"type": "jsonl", "path": str(tmp_path / "a.jsonl")}],
    ).start()  # fmt: skip
    pids = shipper_pids(tmp_path / "spool")
    assert len(pids) == 1
    assert pids[0] != os.getpid()
    for i in range(300):
        trail.emit(schemas.LOGOUT, logout(f"u{i}"))
    assert trail.drain(timeout=60)
    time.sleep(0.5)  # the process writes its status file every 0.2 s
    # the epoch's first record and the 300 events
    assert [s.delivered for s in trail.shippers] == [301, 301]
    trail.stop()
    assert shipper_pids(tmp_path / "spool") == []
    for store in ("a.sqlite", "a.jsonl"):
        records = list(read(str(tmp_path / store)))
        # ... and the final checkpoint, delivered as the trail stopped
        assert [r["seq"] for r in records] == list(range(1, 303))
        assert verify(records, KEY.encode()).proven


def test_a_store_outage_is_retried_by_the_process(tmp_path):
    failing = {"left": 3}

    def flaky(request: Request) -> tuple[int, dict | None]:
        if failing["left"]:
            failing["left"] -= 1
            return 503, None
        return 200, None

    receiver = Receiver(flaky)
    try:
        trail = AuditTrail(
            spool_dir=str(tmp_path / "spool"), hub_instance="hub-p", shipping="process",
            retry_max_seconds=0.3, sinks=[{"type": "webhook", "url": receiver.url}],
        ).start()  # fmt: skip
        for i in range(20):
            trail.emit(schemas.LOGOUT, logout(f"u{i}"))
        assert trail.drain(timeout=60)
        time.sleep(0.5)  # the status file is written every 0.2 s
        assert trail.shippers[0].failures == 3
        trail.stop()
    finally:
        receiver.close()


def test_the_shipper_process_ends_when_the_hub_is_killed(tmp_path):
    spool = tmp_path / "spool"
    hub = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from sovereign_hub.audit import schemas
        from sovereign_hub.audit.trail import AuditTrail
        t = AuditTrail(spool_dir={str(spool)!r}, hub_instance="doomed", shipping="process",
                       sinks=[{{"type": "sqlite", "path": {str(tmp_path / "k.sqlite")!r}}}]).start()
        for i in range(50):
            t.emit(schemas.LOGOUT, {{"actor": "a", "subject": "a"}})
        print("ready", flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "SOVEREIGN_AUDIT_HMAC_KEY": KEY})  # fmt: skip
    assert hub.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 20
    while not shipper_pids(spool) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert shipper_pids(spool)
    hub.send_signal(signal.SIGKILL)
    hub.wait()
    deadline = time.monotonic() + 20
    while shipper_pids(spool) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert shipper_pids(spool) == []
    # What the killed hub emitted is in the spool and gets delivered by the next start.
    trail = AuditTrail(spool_dir=str(spool), hub_instance="doomed", shipping="process",
                       sinks=[{"type": "sqlite", "path": str(tmp_path / "k.sqlite")}]).start()  # fmt: skip
    assert trail.seq == 51  # the epoch's first record and the 50 events
    assert trail.drain(timeout=60)
    trail.stop()
    records = list(read(str(tmp_path / "k.sqlite")))
    seqs = [r["seq"] for r in records]
    # and the final checkpoint, unless the loaded machine took longer than stop() waits
    assert seqs in (list(range(1, 52)), list(range(1, 53)))
    assert verify(records, KEY.encode()).ok
