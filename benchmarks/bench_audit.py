"""Audit trail costs (issue #6).

1. Time an emit adds to the caller (the hub's event loop): validate, chain,
   append to the spool. p50/p99 over 100,000 events (target: p99 <= 50 µs),
   alone and while an in-process shipper thread delivers to SQLite.
2. Sustained delivery from a full spool into SQLite, in events/s and as a
   ratio to a raw batched insert of the same rows on the same run.
3. The same into a real PostgreSQL server started for the run (target:
   >= 20,000 events/s and >= 0.7x a raw batched insert of the same rows).
4. Signed checkpoints (issue #19): emit p50/p99 with the shipper process,
   checkpoints on (Ed25519-signed, every 1,000 records or 60 s) against
   checkpoints off (both intervals 0), alternated twice in the same run, as a
   ratio of p99s (target: p99 with checkpoints still <= 50 µs); and the
   cost of writing one signed checkpoint.

Run: `make bench` or `python benchmarks/bench_audit.py [--events N] [--json]`;
`--only-checkpoints` runs part 4 alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sovereign_hub.audit import schemas
from sovereign_hub.audit.shipper import Shipper
from sovereign_hub.audit.signing import new_private_key_pem
from sovereign_hub.audit.sinks.postgresql import COLUMNS as PG_COLUMNS
from sovereign_hub.audit.sinks.postgresql import SCHEMA as PG_SCHEMA
from sovereign_hub.audit.sinks.postgresql import PostgreSQLSink
from sovereign_hub.audit.sinks.sqlite import INSERT as SQLITE_INSERT
from sovereign_hub.audit.sinks.sqlite import SCHEMA, SQLiteSink, row
from sovereign_hub.audit.spool import Spool
from sovereign_hub.audit.trail import AuditTrail
from sovereign_hub.sandbox.postgres import LocalPostgres

PG_MARKS = ",".join("%s" for _ in PG_COLUMNS.split(", "))
EVENT = {
    "actor": "ana",
    "subject": "ana",
    "server": "",
    "profile": "gpu-a100",
    "region": "eu",
    "image": "quay.io/jupyter/pytorch-notebook@sha256:" + "6" * 64,
    "digest": "sha256:" + "6" * 64,
    "gpus": 1,
    "gpu_type": "a100",
    "node": "eu-gpu-1",
    "cluster": "hub",
}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def emit_latency(
    tmp: Path, events: int, sinks: list[dict], shipping: str = "thread", **config: object
) -> dict:
    trail = AuditTrail(
        spool_dir=str(tmp), sinks=sinks, spool_limit_bytes=2**34, shipping=shipping, **config
    ).start()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(events):
        t0 = clock()
        trail.emit(schemas.SERVER_STARTED, EVENT)
        samples.append((clock() - t0) / 1000)
    trail.drain(timeout=600)
    trail.stop()
    return {
        "p50_us": round(statistics.median(samples), 1),
        "p99_us": round(percentile(samples, 0.99), 1),
    }


def delivery(spool_dir: Path, store: Path, events: int) -> dict:
    """Spool -> SQLite throughput from a full spool, against a raw insert of the same rows."""
    spool = Spool(spool_dir, segment_bytes=8 * 2**20)
    shipper = Shipper(spool, SQLiteSink(str(store), name="bench"), batch=500, idle=0.01)
    start = time.perf_counter()
    shipper.start()
    assert shipper.drain(events, timeout=600)
    shipped = events / (time.perf_counter() - start)
    shipper.stop()
    records = spool.read_after(0, events)
    spool.close()
    raw = sqlite3.connect(store.with_name("raw.sqlite"))
    raw.execute("PRAGMA journal_mode=WAL")
    raw.executescript(SCHEMA)
    start = time.perf_counter()
    for i in range(0, len(records), 500):
        with raw:
            raw.executemany(
                SQLITE_INSERT,
                [row(r) for r in records[i : i + 500]],
            )
    direct = len(records) / (time.perf_counter() - start)
    raw.close()
    return {
        "events_per_s": round(shipped),
        "raw_events_per_s": round(direct),
        "ratio": round(shipped / direct, 2),
    }


def pg_delivery(spool_dir: Path, events: int) -> dict:
    """Spool -> PostgreSQL throughput, against raw batched inserts of the same rows.

    Two raw baselines on the same server and run: ``executemany`` of INSERTs
    in batches of 500 (psycopg pipelines them), and ``COPY`` straight into
    the table, the fastest way in.
    """
    import psycopg

    with LocalPostgres() as server:
        spool = Spool(spool_dir, segment_bytes=8 * 2**20)
        sink = PostgreSQLSink(server.create_database("shipped"), name="bench-pg")
        shipper = Shipper(spool, sink, batch=500, idle=0.01)
        start = time.perf_counter()
        shipper.start()
        assert shipper.drain(events, timeout=600)
        shipped = events / (time.perf_counter() - start)
        shipper.stop()
        records = spool.read_after(0, events)
        spool.close()
        rows = [row(r) for r in records]
        rates = {}
        for method in ("insert", "copy"):
            with psycopg.connect(server.create_database(f"raw_{method}")) as db:
                db.execute(PG_SCHEMA)
                db.commit()
                start = time.perf_counter()
                for i in range(0, len(rows), 500):
                    with db.transaction(), db.cursor() as cur:
                        if method == "insert":
                            cur.executemany(
                                f"INSERT INTO audit_events ({PG_COLUMNS}) VALUES "  # noqa: S608
                                f"({PG_MARKS}) "
                                "ON CONFLICT (id) DO NOTHING",
                                rows[i : i + 500],
                            )
                        else:
                            with cur.copy(f"COPY audit_events ({PG_COLUMNS}) FROM STDIN") as cp:
                                for r in rows[i : i + 500]:
                                    cp.write_row(r)
                rates[method] = len(rows) / (time.perf_counter() - start)
    return {
        "events_per_s": round(shipped),
        "raw_insert_events_per_s": round(rates["insert"]),
        "raw_copy_events_per_s": round(rates["copy"]),
        "ratio_to_raw_insert": round(shipped / rates["insert"], 2),
        "ratio_to_raw_copy": round(shipped / rates["copy"], 2),
    }


def checkpoint_costs(root: Path, events: int) -> dict:
    """Emit latency with signed checkpoints on and off, alternated; one checkpoint's cost."""
    private, _, _ = new_private_key_pem()
    key = root / "signing.pem"
    key.write_bytes(private)
    on = {"signing_key_file": str(key)}  # defaults: every 1,000 records or 60 s
    off = {"checkpoint_every_records": 0, "checkpoint_every_seconds": 0}
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    # A discarded warm-up, so neither side pays for imports and first allocations.
    emit_latency(root / "c-warm", max(1000, events // 10), [], "process", **on)
    for round_ in range(2):  # alternated, so drift on a shared machine hits both
        for name, config in (("off", off), ("on", on)):
            sink = [{"type": "sqlite", "path": str(root / f"c-{name}-{round_}.sqlite")}]
            runs[name].append(
                emit_latency(root / f"c-{name}-{round_}", events, sink, "process", **config)
            )
    trail = AuditTrail(
        spool_dir=str(root / "c-sign"), sinks=[], spool_limit_bytes=2**34, **on
    ).start()
    samples = []
    for _ in range(500):
        trail.emit(schemas.SERVER_STARTED, EVENT)
        t0 = time.perf_counter_ns()
        trail.checkpoint()
        samples.append((time.perf_counter_ns() - t0) / 1000)
    trail.stop()
    p99 = {name: round(statistics.median(r["p99_us"] for r in rs), 1) for name, rs in runs.items()}
    return {
        "off": runs["off"],
        "on": runs["on"],
        "p99_off_us": p99["off"],
        "p99_on_us": p99["on"],
        "ratio_p99_on_to_off": round(p99["on"] / p99["off"], 2),
        "one_signed_checkpoint_p50_us": round(statistics.median(samples), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL figure")
    parser.add_argument(
        "--only-checkpoints", action="store_true", help="only the checkpoints on/off figures"
    )
    args = parser.parse_args()
    os.environ.setdefault("SOVEREIGN_AUDIT_HMAC_KEY", "benchmark-key-" + "0" * 32)
    if args.only_checkpoints:
        with tempfile.TemporaryDirectory() as tmp:
            figures = checkpoint_costs(Path(tmp), args.events)
        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            print_checkpoints(args.events, figures)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        alone = emit_latency(root / "alone", args.events, [])
        shipping = emit_latency(
            root / "shipping", args.events, [{"type": "sqlite", "path": str(root / "s.sqlite")}]
        )
        in_process = emit_latency(
            root / "process",
            args.events,
            [{"type": "sqlite", "path": str(root / "p.sqlite")}],
            shipping="process",
        )
        rate = delivery(root / "alone", root / "d.sqlite", args.events)
        pg = pg_delivery(root / "alone", args.events) if not args.no_postgres else None
        checkpoints = checkpoint_costs(root, args.events)
    report = {
        "events": args.events,
        "emit_alone": alone,
        "emit_with_in_process_shipper": shipping,
        "emit_with_shipper_process": in_process,
        "target_emit_p99_us": 50,
        "sqlite_delivery": rate,
        "postgresql_delivery": pg,
        "target_postgresql_events_per_s": 20_000,
        "target_postgresql_ratio": 0.7,
        "checkpoints": checkpoints,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"emit, {args.events:,} events: p50 {alone['p50_us']} µs, "
            f"p99 {alone['p99_us']} µs alone; p50 {shipping['p50_us']} µs, "
            f"p99 {shipping['p99_us']} µs while a shipper thread delivers; p50 "
            f"{in_process['p50_us']} µs, p99 {in_process['p99_us']} µs while the shipper "
            "process delivers (target p99 <= 50 µs)"
        )
        print(
            f"delivery spool -> SQLite: {rate['events_per_s']:,} events/s; raw batched insert "
            f"of the same rows {rate['raw_events_per_s']:,} events/s; ratio {rate['ratio']}"
        )
        if pg:
            print(
                f"delivery spool -> PostgreSQL: {pg['events_per_s']:,} events/s (target 20,000); "
                f"raw batched INSERT {pg['raw_insert_events_per_s']:,}/s, ratio "
                f"{pg['ratio_to_raw_insert']} (target >= 0.7); raw COPY "
                f"{pg['raw_copy_events_per_s']:,}/s, ratio {pg['ratio_to_raw_copy']}"
            )
        print_checkpoints(args.events, checkpoints)
    return 0


def print_checkpoints(events: int, figures: dict) -> None:
    rounds = "; ".join(
        f"off p99 {off['p99_us']} µs, on p99 {on['p99_us']} µs"
        for off, on in zip(figures["off"], figures["on"], strict=True)
    )
    print(
        f"emit with the shipper process, {events:,} events, signed checkpoints every 1,000 "
        f"records: p99 {figures['p99_on_us']} µs on, {figures['p99_off_us']} µs off, ratio "
        f"{figures['ratio_p99_on_to_off']} (target p99 <= 50 µs; rounds: {rounds}); one "
        f"signed checkpoint {figures['one_signed_checkpoint_p50_us']} µs (p50)"
    )


if __name__ == "__main__":
    sys.exit(main())
