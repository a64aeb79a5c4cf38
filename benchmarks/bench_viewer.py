"""Audit viewer query cost over 1,000,000 events in a real PostgreSQL (issue #10).

Target: a filtered page answers in under 200 ms. The rows are synthetic
(5,000 users, every event type, three regions, 180 days) and are written
with COPY straight into the table the PostgreSQL sink creates, with its
indexes; building a million-record HMAC chain through the spool would add
minutes and nothing to what a query costs.

Each figure is `Store.page`, as the viewer calls it per request (through
its connection pool), p50 and p99 over repeated runs. The baseline is the
same SQL on an already-open connection: the raw store on the same run.

Run: `make bench` or `python benchmarks/bench_viewer.py [--events N] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from sovereign_hub.audit.sinks.postgresql import COLUMNS, SCHEMA
from sovereign_hub.audit.viewer.query import EVENTS, Query, Store
from sovereign_hub.sandbox.postgres import LocalPostgres

BASE = "https://sovereign-hub.io/events"


def rows(n: int, seed: int = 7):
    rng = random.Random(seed)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    step = timedelta(days=180) / n
    for i in range(n):
        user = f"user{rng.randrange(5000):04d}"
        event = rng.choice(EVENTS)
        region = rng.choice(("eu", "us", "apac"))
        digest = "sha256:" + f"{rng.randrange(16):x}" * 64
        data = {"actor": user, "subject": user, "region": region, "digest": digest}
        when = (start + step * i).isoformat(timespec="microseconds").replace("+00:00", "Z")
        yield (
            str(uuid.UUID(int=rng.getrandbits(128))), "bench", i + 1, when,
            f"{BASE}/{event}/v1", "1", event, user, user, region, digest,
            json.dumps(data, sort_keys=True), "0" * 64, "0" * 64, "20260601T000000Z-000000", "",
        )  # fmt: skip


def timed(fn, runs: int) -> dict:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(samples[min(len(samples) - 1, int(0.99 * len(samples)))], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with LocalPostgres() as server:
        url = server.url
        with psycopg.connect(url) as db:
            db.execute(SCHEMA)
            t0 = time.perf_counter()
            with db.cursor() as cur, cur.copy(f"COPY audit_events ({COLUMNS}) FROM STDIN") as copy:
                for row in rows(args.events):
                    copy.write_row(row)
            db.commit()
            db.execute("ANALYZE audit_events")
            db.commit()
            loaded = time.perf_counter() - t0
        store = Store(url)
        first_page, cursor = store.page(Query(event="spawn-denied"), limit=50)
        deep = cursor
        for _ in range(20):  # 20 pages in: keyset paging keeps the cost flat
            _, deep = store.page(Query(event="spawn-denied"), after=deep, limit=50)
        cases = {
            "user": Query(user="user0042"),
            "event type": Query(event="spawn-denied"),
            "region and time range": Query(region="eu", since="2026-09-01", until="2026-09-08"),
            "image digest": Query(digest="sha256:" + "a" * 64),
            "outcome refused": Query(outcome="refused"),
            "user and event": Query(user="user0042", event="server-started"),
            "no filter": Query(),
        }
        report: dict = {"events": args.events, "load_seconds": round(loaded, 1), "target_ms": 200}
        open_db = psycopg.connect(url)
        for name, query in cases.items():
            viewer = timed(lambda q=query: store.page(q, limit=50), args.runs)
            # The same conditions the store plug-in builds for the page, run bare.
            clauses, params = store.backend.conditions(query.filters(), query.outcome)
            sql = (
                "SELECT * FROM audit_events"  # noqa: S608 - fixed columns, bound values
                + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
                + " ORDER BY time DESC, id DESC LIMIT 51"
            )
            raw = timed(lambda s=sql, p=params: open_db.execute(s, p).fetchall(), args.runs)
            report[name] = {
                "viewer": viewer,
                "raw_sql": raw,
                "ratio_p50": round(viewer["p50_ms"] / max(raw["p50_ms"], 0.01), 1),
            }
        report["page 21 of event type"] = {
            "viewer": timed(lambda: store.page(Query(event="spawn-denied"), after=deep), args.runs)
        }
        open_db.close()
        store.close()
        assert first_page
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.events:,} events loaded in {report['load_seconds']} s; target: a page < 200 ms")
    for name, figures in report.items():
        if not isinstance(figures, dict):
            continue
        v = figures["viewer"]
        line = f"  {name:24} page p50 {v['p50_ms']:7.2f} ms, p99 {v['p99_ms']:7.2f} ms"
        if "raw_sql" in figures:
            r = figures["raw_sql"]
            line += (
                f"   (same SQL on an open connection p50 {r['p50_ms']:.2f} ms;"
                f" ×{figures['ratio_p50']})"
            )
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
