"""``sovhub audit``: verify the chain, query and export the trail."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .store import Filters, StoreError, read
from .verify import verify

EXIT_BROKEN = 1
EXIT_USAGE = 2


def _key(args: argparse.Namespace) -> bytes:
    if args.key_file:
        return Path(args.key_file).read_bytes().strip()
    key = os.environ.get("SOVEREIGN_AUDIT_HMAC_KEY", "").encode()
    if not key:
        raise SystemExit("sovhub audit verify: give --key-file or set SOVEREIGN_AUDIT_HMAC_KEY")
    return key


def _filters(args: argparse.Namespace) -> Filters:
    return Filters(
        user=args.user,
        event=args.type,
        since=args.since,
        until=args.until,
        region=args.region,
        digest=args.digest,
    )


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        report = verify(read(args.store), _key(args))
    except StoreError as exc:
        print(f"sovhub audit verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "records": report.records,
                    "verifiedThrough": report.verified_through,
                    "findings": [
                        {"kind": f.kind, "hub": f.hub, "seq": f.seq, "message": f.message}
                        for f in report.findings
                    ],
                },
                indent=2,
            )
        )
    elif report.ok:
        through = ", ".join(
            f"{hub} through #{seq}" for hub, seq in sorted(report.verified_through.items())
        )
        print(f"{args.store}: chain intact: {report.records} records ({through or 'empty'})")
    else:
        print(
            f"{args.store}: chain BROKEN: {len(report.findings)} problem(s) "
            f"in {report.records} records"
        )
        for finding in report.findings:
            print(f"  [{finding.kind}] {finding.message}")
    return 0 if report.ok else EXIT_BROKEN


def cmd_query(args: argparse.Namespace) -> int:
    try:
        records = list(read(args.store, _filters(args)))
    except StoreError as exc:
        print(f"sovhub audit query: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        for record in records:
            print(json.dumps(record, sort_keys=True))
        return 0
    print(f"{'time':27} {'event':18} {'subject':16} {'region':7} detail")
    for r in records:
        data = r["data"]
        event = r["schema"].rstrip("/").split("/")[-2]
        detail = (
            data.get("digest")
            or "; ".join(x["message"] for x in data.get("reasons", []))
            or data.get("detail", "")
        )
        print(
            f"{r['time']:27} {event:18} {data.get('subject', '')!s:16} "
            f"{data.get('region', '')!s:7} {detail}"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        for record in read(args.store, _filters(args)):
            sys.stdout.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
    except StoreError as exc:
        print(f"sovhub audit export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", help="the user the events are about")
    parser.add_argument("--type", help="event family, e.g. spawn-denied, server-started")
    parser.add_argument("--since", help="ISO 8601 time, inclusive")
    parser.add_argument("--until", help="ISO 8601 time, exclusive")
    parser.add_argument("--region")
    parser.add_argument("--digest", help="image digest, sha256:…")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    audit = commands.add_parser("audit", help="verify, query and export the audit trail")
    sub = audit.add_subparsers(dest="audit_command", required=True)

    check = sub.add_parser(
        "verify",
        help="check the tamper-evident chain of a store or export",
        description="Verify every hub's HMAC chain in STORE (an audit SQLite file or a JSON-lines "
        "export). Exit 0 when intact; 1 naming each changed, dropped, inserted or reordered "
        "record.",
    )
    check.add_argument("store", metavar="STORE")
    check.add_argument(
        "--key-file", help="file with the HMAC key (default: $SOVEREIGN_AUDIT_HMAC_KEY)"
    )
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=cmd_verify)

    query = sub.add_parser("query", help="list events, filtered")
    query.add_argument("store", metavar="STORE")
    _add_filters(query)
    query.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    query.set_defaults(func=cmd_query)

    export = sub.add_parser("export", help="write events as JSON lines (verifiable with `verify`)")
    export.add_argument("store", metavar="STORE")
    _add_filters(export)
    export.set_defaults(func=cmd_export)
