"""Signed checkpoints, epochs, key rotation and retention, as an auditor meets them.

Every scenario runs a real trail into SQLite or a JSON-lines file and checks
the verdict of `sovhub audit verify` (the real command, as a process) or of
`verify()`: with the HMAC key, with the public key alone, or both.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sovereign_hub.audit import schemas
from sovereign_hub.audit.chain import Keyring
from sovereign_hub.audit.checkpoint import digest, family_of, fingerprint, leaf, signed_payload
from sovereign_hub.audit.signing import PublicKeys, Signer, new_private_key_pem
from sovereign_hub.audit.store import read
from sovereign_hub.audit.trail import AuditTrail
from sovereign_hub.audit.verify import verify

KEY = "checkpoint-test-key-" + "c" * 32
SOVHUB = str(Path(sys.executable).with_name("sovhub"))


@pytest.fixture(autouse=True)
def hmac_key(monkeypatch):
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", KEY)


def keypair(directory: Path, name: str = "signing") -> tuple[Path, Path]:
    private, public, _ = new_private_key_pem()
    (directory / f"{name}.pem").write_bytes(private)
    (directory / f"{name}.pub").write_bytes(public)
    return directory / f"{name}.pem", directory / f"{name}.pub"


def logout(i: int) -> dict:
    return {"actor": f"user{i}", "subject": f"user{i}"}


def run_trail(tmp_path: Path, n: int, *, spool: str = "spool", **config) -> AuditTrail:
    config.setdefault("sinks", [{"type": "jsonl", "path": str(tmp_path / "x.jsonl")}])
    t = AuditTrail(spool_dir=str(tmp_path / spool), hub_instance="hub-a", **config).start()
    for i in range(n):
        t.emit(schemas.LOGOUT, logout(i))
    assert t.drain()
    t.stop()
    return t


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def sovhub_verify(store: Path | str, *args: str, hmac: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SOVEREIGN_AUDIT_HMAC_KEY"}
    if hmac:
        env["SOVEREIGN_AUDIT_HMAC_KEY"] = KEY
    return subprocess.run(
        [SOVHUB, "audit", "verify", str(store), *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def signed_export(tmp_path) -> tuple[list[dict], Path]:
    """120 events, a checkpoint every 25 records, signed; the trail stopped cleanly."""
    private, public = keypair(tmp_path)
    run_trail(tmp_path, 120, signing_key_file=str(private), checkpoint_every_records=25)
    return lines(tmp_path / "x.jsonl"), public


def test_the_issue_example_a_cut_tail_no_longer_verifies_as_intact(tmp_path, signed_export):
    """Issue #19: an export with its last 5 records removed verified as 'chain intact'."""
    records, public = signed_export
    whole = sovhub_verify(write(tmp_path / "whole.jsonl", records), "--public-key", str(public))
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert "chain intact:" in whole.stdout
    cut = write(tmp_path / "cut.jsonl", records[:-5])
    # Right away: the records after the newest checkpoint cannot be proven complete.
    now = sovhub_verify(cut)
    assert "NOT YET PROVEN COMPLETE" in now.stdout
    assert "[unproven]" in now.stdout
    assert now.returncode == 0  # as for a live store, whose newest records await a checkpoint
    assert sovhub_verify(cut, "--strict").returncode == 3  # archives: only proven passes
    assert sovhub_verify(write(tmp_path / "w.jsonl", records), "--strict").returncode == 0
    # Once the next checkpoint was due (here: an auditor a day later), it is a truncation.
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for args, hmac in (
        (("--as-of", later), True),
        (("--as-of", later, "--public-key", str(public)), False),
    ):
        result = sovhub_verify(cut, *args, hmac=hmac)
        assert result.returncode == 1, result.stdout
        assert "[truncated]" in result.stdout
        assert "chain intact" not in result.stdout


def test_the_public_key_alone_verifies_and_needs_no_hmac_key(tmp_path, signed_export):
    records, public = signed_export
    checkpoints = [r for r in records if family_of(r) == "checkpoint"]
    assert len(checkpoints) == 5  # 121 records / 25, and the final one
    assert checkpoints[-1]["data"]["final"] is True
    result = sovhub_verify(
        write(tmp_path / "x2.jsonl", records), "--public-key", str(public), "--json", hmac=False
    )
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["proven"]
    assert report["checkedWith"]["hmac"] is False
    assert report["checkedWith"]["publicKeys"] == [checkpoints[0]["data"]["key_id"]]
    refused = sovhub_verify(tmp_path / "x2.jsonl", hmac=False)
    assert refused.returncode == 2
    assert "--public-key" in refused.stderr


def public_findings(records: list[dict], public: Path) -> list[tuple[str, int]]:
    report = verify(records, None, PublicKeys.from_files([public]))
    return [(f.kind, f.seq) for f in report.findings]


def test_with_the_public_key_a_changed_record_breaks_the_signed_digest(signed_export):
    records, public = signed_export
    records[9]["data"]["subject"] = "mallory"  # seq 10, covered by the checkpoint at #26
    assert public_findings(records, public) == [("digest", 26)]


def test_with_the_public_key_a_removed_record_is_named(signed_export):
    records, public = signed_export
    del records[40]  # seq 41
    assert public_findings(records, public) == [("dropped", 41)]


def test_with_the_public_key_a_removed_checkpoint_is_found(signed_export):
    records, public = signed_export
    position = next(i for i, r in enumerate(records) if family_of(r) == "checkpoint")
    del records[position]  # the first checkpoint, #26
    findings = public_findings(records, public)
    assert ("dropped", 26) in findings
    assert ("checkpoint-chain", 52) in findings


def test_a_checkpoint_signed_by_another_key_is_refused(tmp_path, signed_export):
    records, _public = signed_export
    _, other = keypair(tmp_path, "other")
    report = verify(records, None, PublicKeys.from_files([other]))
    assert {f.kind for f in report.findings} == {"signature"}
    assert "not among the public keys given" in report.findings[0].message


def test_unsigned_checkpoints_protect_only_holders_of_the_hmac_key(tmp_path):
    run_trail(tmp_path, 30, checkpoint_every_records=10)
    records = lines(tmp_path / "x.jsonl")
    assert verify(records, KEY.encode()).proven
    _, public = keypair(tmp_path)
    report = verify(records, None, PublicKeys.from_files([public]))
    # Intact, but nothing is provable by key: the hub never signed at all.
    assert report.ok
    assert not report.proven
    [segment] = report.unsigned
    assert (segment.first, segment.last, segment.prefix) == (1, len(records), False)
    store = write(tmp_path / "never.jsonl", records)
    for args in ((), ("--allow-unsigned-prefix",)):
        result = sovhub_verify(store, "--public-key", str(public), *args, hmac=False)
        assert result.returncode == 3, result.stdout
        assert "NOT PROVEN BY KEY" in result.stdout
        assert "has no signed checkpoint at all" in result.stdout


@pytest.fixture
def upgraded_export(tmp_path) -> tuple[list[dict], Path, Path]:
    """A release without a signing key writes 12 events (checkpoints every 5 records,
    unsigned), then the current release, with a key, continues the same spool and epoch."""
    private, public = keypair(tmp_path)
    run_trail(tmp_path, 12, checkpoint_every_records=5)
    run_trail(tmp_path, 12, checkpoint_every_records=5, signing_key_file=str(private))
    return lines(tmp_path / "x.jsonl"), public, private


def first_signed(records: list[dict]) -> dict:
    return next(r for r in records if family_of(r) == "checkpoint" and r["data"]["signature"])


def test_an_upgrade_from_a_release_without_a_signing_key_is_an_unsigned_prefix(
    tmp_path, upgraded_export
):
    """Session 6 left this exiting 1 ("[unsigned]") on an intact chain."""
    records, public, _ = upgraded_export
    assert len({r["epoch"] for r in records}) == 1  # one chain across the upgrade
    signed = first_signed(records)
    report = verify(records, None, PublicKeys.from_files([public]))
    assert report.ok, report.findings
    [segment] = report.unsigned
    assert (segment.first, segment.last) == (1, signed["data"]["first_seq"] - 1)
    assert segment.prefix
    assert segment.signed_by == signed["seq"]
    assert not report.proven
    assert report.unsigned_prefix_only
    store = write(tmp_path / "upgraded.jsonl", records)
    strict = sovhub_verify(store, "--public-key", str(public), hmac=False)
    assert strict.returncode == 3, strict.stdout
    assert "chain intact, NOT PROVEN BY KEY" in strict.stdout
    expected = (
        f"[unsigned] unsigned segment: hub-a epoch {signed['epoch']} records "
        f"#1..#{segment.last}, chain intact, not provable by key"
    )
    assert expected in strict.stdout, strict.stdout
    assert f"signed checkpoint #{signed['seq']} links to them" in strict.stdout
    allowed = sovhub_verify(
        store, "--public-key", str(public), "--allow-unsigned-prefix", "--json", hmac=False
    )
    assert allowed.returncode == 0, allowed.stdout
    verdict = json.loads(allowed.stdout)
    assert verdict["ok"]
    assert not verdict["proven"]
    assert verdict["unsignedPrefixAllowed"]
    assert [(u["first"], u["last"]) for u in verdict["unsignedSegments"]] == [(1, segment.last)]
    # With the HMAC key as well, the prefix is proven record by record.
    both = sovhub_verify(store, "--public-key", str(public))
    assert both.returncode == 0, both.stdout
    assert "[unsigned]" not in both.stdout
    assert "proven by the HMAC key" in both.stdout


def test_after_an_upgrade_a_cut_or_a_change_is_still_found(tmp_path, upgraded_export):
    records, public, _ = upgraded_export
    publics = PublicKeys.from_files([public])
    signed = first_signed(records)
    # A record after signing began removed.
    after = [r for r in records if r["seq"] != signed["seq"] + 2]
    assert ("dropped", signed["seq"] + 2) in public_findings(after, public)
    # The tail cut, judged a day later: truncation, prefix accepted or not.
    later = datetime.now(UTC) + timedelta(days=1)
    assert [f.kind for f in verify(records[:-3], None, publics, as_of=later).findings] == [
        "truncated"
    ]
    cut = sovhub_verify(
        write(tmp_path / "cut.jsonl", records[:-3]), "--public-key", str(public),
        "--allow-unsigned-prefix", "--as-of", later.isoformat(), hmac=False,
    )  # fmt: skip
    assert cut.returncode == 1, cut.stdout
    assert "[truncated]" in cut.stdout
    # A record of the unsigned prefix changed: its unsigned checkpoint's digest no
    # longer matches, and a forger who recomputes that digest breaks the signed link.
    changed = [dict(r) for r in records]
    changed[2] = {**changed[2], "data": {**changed[2]["data"], "actor": "mallory"}}
    assert {f.kind for f in verify(changed, None, publics).findings} == {"digest"}
    first_unsigned = next(i for i, r in enumerate(changed) if family_of(r) == "checkpoint")
    leaves = [leaf(r) for r in changed[:first_unsigned]]
    forged = changed[first_unsigned]
    changed[first_unsigned] = {**forged, "data": {**forged["data"], "digest": digest(leaves)}}
    kinds = {f.kind for f in verify(changed, None, publics).findings}
    assert kinds == {"checkpoint-chain"}, kinds


def test_an_unsigned_checkpoint_after_signing_began_is_a_finding(tmp_path):
    """A rollback to a release without the key, or a forged checkpoint, is not a prefix."""
    private, public = keypair(tmp_path)
    run_trail(tmp_path, 12, checkpoint_every_records=5, signing_key_file=str(private))
    run_trail(tmp_path, 12, checkpoint_every_records=5)
    records = lines(tmp_path / "x.jsonl")
    report = verify(records, None, PublicKeys.from_files([public]))
    assert report.findings
    assert {f.kind for f in report.findings} == {"unsigned"}
    assert "signed its checkpoints before it" in report.findings[0].message
    result = sovhub_verify(
        write(tmp_path / "down.jsonl", records), "--public-key", str(public),
        "--allow-unsigned-prefix", hmac=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout


def test_checkpoints_are_written_on_time_even_when_nothing_happens(tmp_path):
    private, public = keypair(tmp_path)
    t = AuditTrail(
        spool_dir=str(tmp_path / "spool"), hub_instance="hub-a", signing_key_file=str(private),
        checkpoint_every_seconds=0.4, sinks=[{"type": "jsonl", "path": str(tmp_path / "x.jsonl")}],
    ).start()  # fmt: skip
    t.emit(schemas.LOGOUT, logout(0))
    time.sleep(1.6)
    assert t.drain()
    records = lines(tmp_path / "x.jsonl")
    beats = [r for r in records if family_of(r) == "checkpoint"]
    assert len(beats) >= 2
    assert beats[0]["data"]["last_seq"] == 2  # the epoch start and the event
    assert beats[-1]["data"]["first_seq"] == beats[-1]["data"]["last_seq"] + 1  # idle
    report = verify(records, None, PublicKeys.from_files([public]))
    assert report.ok, report.findings
    # A silent hub whose heartbeats stopped arriving is told from a quiet one.
    later = datetime.now(UTC) + timedelta(hours=1)
    stale = verify(records, None, PublicKeys.from_files([public]), as_of=later)
    assert [f.kind for f in stale.findings] == ["truncated"]
    t.stop()


def test_a_lost_spool_starts_a_new_epoch_and_a_dropped_epoch_is_found(tmp_path):
    private, public = keypair(tmp_path)
    store = tmp_path / "audit.sqlite"
    sinks = [{"type": "sqlite", "path": str(store)}]
    first = run_trail(tmp_path, 10, sinks=sinks, signing_key_file=str(private))
    shutil.rmtree(tmp_path / "spool")  # the hub's volume is gone
    second = run_trail(tmp_path, 10, sinks=sinks, signing_key_file=str(private))
    assert second.epoch != first.epoch
    records = list(read(str(store)))
    start = next(r for r in records if r.get("epoch") == second.epoch and r["seq"] == 1)
    assert start["data"]["previous_state"] == "found"
    assert start["data"]["previous_epoch"] == first.epoch
    assert start["data"]["previous_seq"] == first.seq
    result = sovhub_verify(store, "--public-key", str(public))
    assert result.returncode == 0, result.stdout
    assert f"[boundary] hub-a epoch {second.epoch} began at" in result.stdout
    assert f"ended at hub-a epoch {first.epoch} #{first.seq}" in result.stdout
    # Removing the first epoch whole is found from what the second one says.
    db = sqlite3.connect(store)
    db.execute("DELETE FROM audit_events WHERE epoch = ?", (first.epoch,))
    db.commit()
    db.close()
    report = verify(read(str(store)), None, PublicKeys.from_files([public]))
    assert [f.kind for f in report.findings] == ["dropped-epoch"]


def test_an_unsigned_epoch_before_an_upgrade_is_a_prefix_and_its_removal_is_found(tmp_path):
    """The old release (no key) wrote one epoch; the upgraded hub lost its spool and began
    a signed one. The old epoch is an unsigned segment; deleting it is still found."""
    private, public = keypair(tmp_path)
    store = tmp_path / "audit.sqlite"
    sinks = [{"type": "sqlite", "path": str(store)}]
    old = run_trail(tmp_path, 8, sinks=sinks, checkpoint_every_records=5)
    shutil.rmtree(tmp_path / "spool")
    new = run_trail(tmp_path, 8, sinks=sinks, signing_key_file=str(private))
    publics = PublicKeys.from_files([public])
    report = verify(read(str(store)), None, publics)
    assert report.ok, report.findings
    [segment] = report.unsigned
    assert (segment.epoch, segment.first, segment.last) == (old.epoch, 1, old.seq)
    assert segment.prefix
    assert segment.signed_by is None  # another epoch: only the boundary binds its end
    accepted = sovhub_verify(store, "--public-key", str(public), "--allow-unsigned-prefix")
    assert accepted.returncode == 0, accepted.stdout
    assert f"ended at hub-a epoch {old.epoch} #{old.seq}" in accepted.stdout
    db = sqlite3.connect(store)
    db.execute("DELETE FROM audit_events WHERE epoch = ?", (old.epoch,))
    db.commit()
    db.close()
    report = verify(read(str(store)), None, publics)
    assert [f.kind for f in report.findings] == ["dropped-epoch"]
    assert report.unsigned == []
    assert new.epoch != old.epoch


def test_two_epochs_begun_in_the_same_second_are_read_in_the_order_they_began(
    tmp_path, monkeypatch
):
    """Epoch ids name their second, then a random suffix: a hub that lost its spool
    within the second its epoch began gets an id that may sort first. Verification
    must still read the epochs in the order they began (it was flaky here)."""
    ids = iter(["20261130T000000Z-ffffff", "20261130T000000Z-000000"])
    monkeypatch.setattr("sovereign_hub.audit.trail.new_epoch_id", lambda: next(ids))
    private, public = keypair(tmp_path)
    store = tmp_path / "audit.sqlite"
    sinks = [{"type": "sqlite", "path": str(store)}]
    old = run_trail(tmp_path, 8, sinks=sinks, checkpoint_every_records=5)
    shutil.rmtree(tmp_path / "spool")
    new = run_trail(tmp_path, 8, sinks=sinks, signing_key_file=str(private))
    assert new.epoch < old.epoch  # the later epoch's id sorts first
    report = verify(read(str(store)), None, PublicKeys.from_files([public]))
    assert report.ok, report.findings
    assert [e.epoch for e in report.epochs] == [old.epoch, new.epoch]
    [segment] = report.unsigned
    assert (segment.epoch, segment.prefix) == (old.epoch, True)


def test_an_unsigned_epoch_no_later_epoch_names_is_not_accepted_as_a_prefix(tmp_path):
    """Someone who can write the store adds an 'earlier' unsigned epoch to a signed hub:
    nothing ties it to the signed trail, so --allow-unsigned-prefix does not accept it."""
    private, public = keypair(tmp_path)
    run_trail(tmp_path, 8, signing_key_file=str(private))
    signed = lines(tmp_path / "x.jsonl")
    run_trail(tmp_path, 6, spool="forger", sinks=[{"type": "jsonl", "path": str(tmp_path / "f")}])
    forged = [{**r, "epoch": "00000000T0000Z-forged"} for r in lines(tmp_path / "f")]
    # What needs no key: the unsigned checkpoints' digests and links, recomputed.
    previous = ""
    for record in forged:
        if family_of(record) == "checkpoint":
            data = record["data"]
            data["digest"] = digest([
                leaf(r) for r in forged
                if data["first_seq"] <= r["seq"] <= data["last_seq"]
                and family_of(r) != "checkpoint"
            ])  # fmt: skip
            data["previous"] = previous
            previous = fingerprint(record)
    report = verify(forged + signed, None, PublicKeys.from_files([public]))
    assert report.ok, report.findings
    [segment] = report.unsigned
    assert segment.unlinked
    assert not segment.prefix
    assert not report.unsigned_prefix_only
    result = sovhub_verify(
        write(tmp_path / "mixed.jsonl", forged + signed), "--public-key", str(public),
        "--allow-unsigned-prefix", hmac=False,
    )  # fmt: skip
    assert result.returncode == 3, result.stdout
    assert "nothing ties it to the signed trail" in result.stdout


def upgrade_from_a_release_without_checkpoints(
    tmp_path: Path, private: Path, store: Path, *, unsigned_between: bool = False
) -> int:
    """A release without checkpoints writes 40 events; its spool keeps only what the
    store has not acknowledged, so the upgraded hub (same spool and epoch) can hash only
    the records still spooled: its first checkpoint starts after #1. With
    ``unsigned_between``, a release with unsigned checkpoints runs before the one with a
    signing key. Returns the first record the epoch's first checkpoint covers."""
    sinks = [{"type": "sqlite", "path": str(store)}]
    old = AuditTrail(
        spool_dir=str(tmp_path / "spool"), hub_instance="hub-a", sinks=sinks,
        checkpoint_every_records=0, checkpoint_every_seconds=0, spool_limit_bytes=32768,
    ).start()  # fmt: skip
    for i in range(40):
        old.emit(schemas.LOGOUT, logout(i))
    assert old.drain()
    names = [s.sink.name for s in old.shippers]
    deadline = time.monotonic() + 10  # the shipper writes its cursor file just after acking
    while min(old.spool.cursor(n) for n in names) < old.seq and time.monotonic() < deadline:
        time.sleep(0.05)
    # What the hub does about once a second: drop the segments every store acknowledged.
    old.spool.collect(names)
    old.stop()
    if unsigned_between:
        run_trail(tmp_path, 6, sinks=sinks, checkpoint_every_records=5)
    run_trail(tmp_path, 8, sinks=sinks, checkpoint_every_records=5, signing_key_file=str(private))
    records = list(read(str(store)))
    first = next(r for r in records if family_of(r) == "checkpoint")["data"]["first_seq"]
    assert first > 2  # the records before it are in the store, but no checkpoint covers them
    return first


@pytest.mark.parametrize(
    ("later_epoch", "unsigned_between"),
    [(False, False), (True, False), (False, True)],
    ids=["last-epoch", "vouched-by-next", "unsigned-checkpoints-after-them"],
)
def test_records_before_the_first_signed_checkpoint_no_digest_covers_are_not_a_prefix(
    tmp_path, later_epoch, unsigned_between
):
    """Records of the signed epoch before its first checkpoint, with no unsigned
    checkpoint covering them: with the public key alone nothing binds their content (a
    forger may rewrite them and keep their MAC text), so --allow-unsigned-prefix must
    not accept them. A later epoch naming this one's end binds only its end."""
    private, public = keypair(tmp_path)
    store = tmp_path / "audit.sqlite"
    first = upgrade_from_a_release_without_checkpoints(
        tmp_path, private, store, unsigned_between=unsigned_between
    )
    if later_epoch:
        shutil.rmtree(tmp_path / "spool")  # the epoch is vouched for by the next one
        run_trail(tmp_path, 3, sinks=[{"type": "sqlite", "path": str(store)}],
                  signing_key_file=str(private))  # fmt: skip
    records = list(read(str(store)))
    signing_epoch = next(r["epoch"] for r in records if r["seq"] == 40)  # not the later one
    ours = [r for r in records if r["epoch"] == signing_epoch]
    # Without the HMAC key, a rewritten uncovered record still "verifies".
    i = next(i for i, r in enumerate(records) if (r["epoch"], r["seq"]) == (signing_epoch, 2))
    records[i] = {**records[i], "data": {**records[i]["data"], "actor": "mallory"}}
    report = verify(records, None, PublicKeys.from_files([public]))
    assert report.ok, report.findings
    [segment] = report.unsigned
    assert segment.epoch == signing_epoch
    signed = first_signed(ours)["data"]["first_seq"]
    assert (segment.first, segment.last) == (1, signed - 1)
    assert segment.summary()["uncoveredThrough"] == first - 1
    assert not segment.prefix
    assert not report.unsigned_prefix_only
    which = f"#1..#{first - 1}" if unsigned_between else "these records"
    assert f"no digest covers {which}" in segment.message()
    assert "earlier epoch" not in segment.message()
    result = sovhub_verify(
        write(tmp_path / "forged.jsonl", records), "--public-key", str(public),
        "--allow-unsigned-prefix", hmac=False,
    )  # fmt: skip
    assert result.returncode == 3, result.stdout
    assert "NOT PROVEN BY KEY" in result.stdout
    assert f"records #1..#{signed - 1}, chain intact, not provable by key" in result.stdout
    assert f"no digest covers {which}" in result.stdout
    # The HMAC key finds the rewritten record.
    assert [f.kind for f in verify(records, KEY.encode()).findings] == ["changed"]


def test_hmac_and_signing_keys_rotate_with_key_ids(tmp_path, monkeypatch):
    old_private, old_public = keypair(tmp_path, "old")
    new_private, new_public = keypair(tmp_path, "new")
    run_trail(tmp_path, 10, signing_key_file=str(old_private))
    new_key = "rotated-key-" + "r" * 32
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", new_key)
    run_trail(tmp_path, 10, signing_key_file=str(new_private))
    records = lines(tmp_path / "x.jsonl")
    assert len({r["kid"] for r in records}) == 2
    both = Keyring([KEY.encode(), new_key.encode()])
    publics = PublicKeys.from_files([old_public, new_public])
    assert verify(records, both, publics).proven
    only_new = verify(records, Keyring([new_key.encode()]))
    assert {f.kind for f in only_new.findings} == {"unknown-key"}
    only_new_public = verify(records, None, PublicKeys.from_files([new_public]))
    assert {f.kind for f in only_new_public.findings} == {"signature"}
    (tmp_path / "old.key").write_text(KEY)
    (tmp_path / "new.key").write_text(new_key)
    result = sovhub_verify(
        tmp_path / "x.jsonl", "--key-file", str(tmp_path / "old.key"),
        "--key-file", str(tmp_path / "new.key"), "--public-key", str(old_public),
        "--public-key", str(new_public), hmac=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout


def test_retention_removes_whole_ranges_and_signs_what_went(tmp_path):
    private, public = keypair(tmp_path)
    store = tmp_path / "audit.sqlite"
    sinks = [{"type": "sqlite", "path": str(store)}]
    run_trail(tmp_path, 60, sinks=sinks, signing_key_file=str(private), checkpoint_every_records=20)
    cutoff = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    time.sleep(0.05)
    run_trail(tmp_path, 15, sinks=sinks, signing_key_file=str(private), checkpoint_every_records=20)
    before = list(read(str(store)))
    retained = subprocess.run(
        [SOVHUB, "audit", "retain", str(store), "--before", cutoff, "--signing-key", str(private)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert retained.returncode == 0, retained.stderr
    after = list(read(str(store)))
    note = after[0]
    assert family_of(note) == "retention"
    assert note["seq"] == 0
    through = note["data"]["through_seq"]
    assert family_of(next(r for r in before if r["seq"] == through)) == "checkpoint"
    assert [r["seq"] for r in after[1:]] == [r["seq"] for r in before if r["seq"] > through]
    assert note["data"]["removed"] == through
    result = sovhub_verify(store, "--public-key", str(public))
    assert result.returncode == 0, result.stdout
    assert f"records #1..#{through} were removed by retention" in result.stdout
    # With the HMAC key alone the signature is not checked: intact, not proven.
    assert sovhub_verify(store, "--strict").returncode == 3
    # Removing more than the signed record says is still found.
    db = sqlite3.connect(store)
    db.execute("DELETE FROM audit_events WHERE seq = ?", (through + 1,))
    db.commit()
    db.close()
    assert sovhub_verify(store, "--public-key", str(public)).returncode == 1
    # A retention record re-signed by someone else's key is refused.
    other, _ = keypair(tmp_path, "other")
    forger = Signer.from_file(other)
    data = {**note["data"], "removed": 1, "key_id": forger.key_id}
    data["signature"] = forger.sign(signed_payload({**note, "data": data}))
    db = sqlite3.connect(store)
    db.execute("UPDATE audit_events SET data = ? WHERE seq = 0", (json.dumps(data),))
    db.commit()
    db.close()
    report = verify(read(str(store)), None, PublicKeys.from_files([public]))
    assert "retention" in {f.kind for f in report.findings}


def test_removing_every_checkpoint_of_a_young_epoch_is_found_once_one_was_due(tmp_path):
    """The epoch's first record says when its first checkpoint is due."""
    private, public = keypair(tmp_path)
    run_trail(tmp_path, 5, signing_key_file=str(private))
    records = [r for r in lines(tmp_path / "x.jsonl") if family_of(r) != "checkpoint"]
    keys = PublicKeys.from_files([public])
    assert verify(records, None, keys).ok  # young: not yet provable either way
    assert verify(records, None, keys).caveats
    later = datetime.now(UTC) + timedelta(hours=1)
    assert [f.kind for f in verify(records, None, keys, as_of=later).findings] == ["truncated"]


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(tmp_path):
    out = tmp_path / "signing.pem"
    made = subprocess.run(
        [SOVHUB, "audit", "keygen", str(out)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    signer = Signer.from_file(out)
    assert signer.key_id in made.stdout
    assert (
        PublicKeys.from_files([tmp_path / "signing.pem.pub"]).check(
            signer.key_id, b"payload", signer.sign(b"payload")
        )
        is None
    )
    again = subprocess.run(
        [SOVHUB, "audit", "keygen", str(out)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert again.returncode == 2
    assert "exists" in again.stderr
    assert Signer.from_file(out).key_id == signer.key_id


def prometheus_samples(path: Path) -> dict[str, float]:
    """name{labels} -> value, parsed by prometheus_client's own text parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        f"{s.name}{{store={s.labels['store']}}}": s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }


def test_the_verdict_is_written_as_prometheus_metrics_for_the_chains_alerts(
    tmp_path, signed_export
):
    """`--metrics-file`: what SovereignAuditChainBroken and SovereignAuditVerifyStale read."""
    records, public = signed_export
    whole, metrics = write(tmp_path / "whole.jsonl", records), tmp_path / "verify.prom"
    done = sovhub_verify(whole, "--public-key", str(public), "--metrics-file", str(metrics),
                         "--metrics-store", "archive", hmac=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    samples = prometheus_samples(metrics)
    assert samples["sovereign_audit_verify_ok{store=archive}"] == 1
    assert samples["sovereign_audit_verify_proven{store=archive}"] == 1
    assert samples["sovereign_audit_verify_records{store=archive}"] == len(records)
    assert samples["sovereign_audit_verify_last_run_timestamp_seconds{store=archive}"] > 1.7e9
    changed = [dict(r) for r in records]
    changed[10] = {**changed[10], "data": {**changed[10]["data"], "actor": "mallory"}}
    broken = sovhub_verify(write(tmp_path / "changed.jsonl", changed), "--public-key",
                           str(public), "--metrics-file", str(metrics), hmac=False)  # fmt: skip
    assert broken.returncode == 1
    samples = prometheus_samples(metrics)
    label = str(tmp_path / "changed.jsonl")
    assert samples[f"sovereign_audit_verify_ok{{store={label}}}"] == 0
    assert samples[f"sovereign_audit_verify_findings{{store={label}}}"] >= 1


def test_the_store_label_never_carries_a_password():
    from sovereign_hub.audit.verifymetrics import store_label

    assert (
        store_label("postgresql://auditor:s3cret@db.internal:5433/audit?sslmode=require")
        == "postgresql://auditor@db.internal:5433/audit"
    )
    assert store_label("/srv/jupyterhub/audit.sqlite") == "/srv/jupyterhub/audit.sqlite"


def test_an_epoch_whose_checkpoints_were_lost_is_not_said_to_predate_the_signing_key(tmp_path):
    """The hub had its signing key all along, but its first epoch's records reached the store
    with no checkpoint (lost with its spool, which held the unshipped one), and the next epoch
    names where that one ended. verify must not claim they were written before the hub had a
    key; --allow-unsigned-prefix accepts them, and the metrics say what was proven."""
    private, public = keypair(tmp_path)
    sinks = [{"type": "sqlite", "path": str(tmp_path / "audit.sqlite")}]
    run_trail(tmp_path, 10, sinks=sinks, signing_key_file=str(private),
              checkpoint_every_records=0, checkpoint_every_seconds=0)  # fmt: skip
    shutil.rmtree(tmp_path / "spool")
    run_trail(tmp_path, 6, sinks=sinks, signing_key_file=str(private), checkpoint_every_records=5)
    records = list(read(str(tmp_path / "audit.sqlite")))
    report = verify(records, None, PublicKeys.from_files([public]))
    assert report.ok, report.findings
    [segment] = report.unsigned
    assert (segment.first, segment.last) == (1, 11)
    assert segment.prefix
    assert "before the hub had a signing key" not in segment.message()
    assert "no checkpoint in the store" in segment.message()
    assert "its checkpoints were lost" in segment.message()
    assert not report.proven
    assert report.proven_allowing(unsigned_prefix=True)
    store, metrics = write(tmp_path / "lost.jsonl", records), tmp_path / "verify.prom"
    for args, code, proven in (((), 3, 0), (("--allow-unsigned-prefix",), 0, 1)):
        done = sovhub_verify(store, "--public-key", str(public), "--metrics-file", str(metrics),
                             "--metrics-store", "lost", *args, hmac=False)  # fmt: skip
        assert done.returncode == code, done.stdout
        assert "before the hub had a signing key" not in done.stdout
        samples = prometheus_samples(metrics)
        assert samples["sovereign_audit_verify_proven{store=lost}"] == proven
        assert samples["sovereign_audit_verify_unsigned_records{store=lost}"] == 11
