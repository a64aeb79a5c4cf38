"""``sovhub audit``: verify the chain, query and export the trail."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from .chain import Keyring
from .retention import describe, retain
from .signing import KeyFileError, PublicKeys, Signer, new_private_key_pem
from .store import Filters, StoreError, read, shown
from .verify import DEFAULT_GRACE, Report, verify

EXIT_BROKEN = 1
EXIT_USAGE = 2
EXIT_UNPROVEN = 3


def _keys(args: argparse.Namespace) -> Keyring:
    """The HMAC keys: every --key-file (several after a rotation), else the environment."""
    if args.key_file:
        return Keyring(Path(f).read_bytes().strip() for f in args.key_file)
    key = os.environ.get("SOVEREIGN_AUDIT_HMAC_KEY", "").encode()
    return Keyring([key] if key else [])


def _as_of(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"sovhub audit: {text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _filters(args: argparse.Namespace) -> Filters:
    return Filters(
        user=args.user,
        event=args.type,
        since=args.since,
        until=args.until,
        region=args.region,
        digest=args.digest,
    )


def _status(report: Report, args: argparse.Namespace) -> int:
    """0 only when what was asked is proven: an unsigned segment fails a public-key
    verification unless --allow-unsigned-prefix accepts it as a prefix."""
    if not report.ok:
        return EXIT_BROKEN
    if report.unsigned and not (args.allow_unsigned_prefix and report.unsigned_prefix_only):
        return EXIT_UNPROVEN
    if args.strict and report.caveats:
        return EXIT_UNPROVEN
    return 0


def _verdict(report: Report, args: argparse.Namespace) -> str:
    if report.unsigned:
        count = report.unsigned_records
        if not report.unsigned_prefix_only:
            return f"chain intact, NOT PROVEN BY KEY: {count} records lie in unsigned segments"
        if not args.allow_unsigned_prefix:
            return (
                f"chain intact, NOT PROVEN BY KEY: {count} records precede the first signed "
                "checkpoint "
                "(--allow-unsigned-prefix accepts them; --key-file proves them)"
            )
        return (
            f"chain intact, proven by key after signing began; {count} earlier records "
            "precede the first signed checkpoint (accepted by --allow-unsigned-prefix)"
        ) + ("" if not report.caveats else ", NOT YET PROVEN COMPLETE")
    return "chain intact" if not report.caveats else "chain intact, NOT YET PROVEN COMPLETE"


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        keys = _keys(args)
        public = PublicKeys.from_files(args.public_key or [])
    except (OSError, KeyFileError) as exc:
        print(f"sovhub audit verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not keys and not public:
        print(
            "sovhub audit verify: give --public-key (anyone can verify with it), or the HMAC "
            "key with --key-file or SOVEREIGN_AUDIT_HMAC_KEY",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        report = verify(read(args.store), keys, public, as_of=_as_of(args.as_of), grace=args.grace)
    except StoreError as exc:
        print(f"sovhub audit verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    status = _status(report, args)
    if args.metrics_file:
        from .verifymetrics import store_label, write_metrics

        write_metrics(
            args.metrics_file,
            args.metrics_store or store_label(args.store),
            report,
            unsigned_prefix=bool(args.allow_unsigned_prefix),
        )
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "proven": report.proven,
                    "records": report.records,
                    "verifiedThrough": report.verified_through,
                    "checkedWith": {"hmac": bool(keys), "publicKeys": sorted(public.keys)},
                    "findings": [
                        {
                            "kind": f.kind,
                            "hub": f.hub,
                            "epoch": f.epoch,
                            "seq": f.seq,
                            "message": f.message,
                        }
                        for f in report.findings
                    ],
                    "caveats": report.caveats,
                    "unsignedSegments": [u.summary() for u in report.unsigned],
                    "unsignedPrefixAllowed": bool(args.allow_unsigned_prefix),
                    "notes": report.notes,
                    "epochs": [e.summary() for e in report.epochs],
                },
                indent=2,
            )
        )
        return status
    evidence = " and ".join(
        x for x in ("HMAC chain" if keys else "", "signed checkpoints" if public else "") if x
    )
    if report.ok:
        through = ", ".join(
            f"{hub} through #{seq}" for hub, seq in sorted(report.verified_through.items())
        )
        verdict = _verdict(report, args)
        print(
            f"{shown(args.store)}: {verdict}: {report.records} records ({through or 'empty'}); "
            f"checked: {evidence}"
        )
    else:
        print(
            f"{shown(args.store)}: chain BROKEN: {len(report.findings)} problem(s) "
            f"in {report.records} records; checked: {evidence}"
        )
        for finding in report.findings:
            print(f"  [{finding.kind}] {finding.message}")
    for segment in report.unsigned:
        print(f"  [unsigned] {segment.message()}")
    for caveat in report.caveats:
        print(f"  [unproven] {caveat}")
    for note in report.notes:
        print(f"  [boundary] {note}" if " began " in note else f"  [note] {note}")
    return status


def cmd_retain(args: argparse.Namespace) -> int:
    if _as_of(args.before) is None:
        return EXIT_USAGE
    try:
        signer = Signer.from_file(args.signing_key)
        password = Path(args.password_file).read_text().strip() if args.password_file else ""
        written = retain(args.store, args.before, signer, password=password)
    except (OSError, KeyFileError, StoreError) as exc:
        print(f"sovhub audit retain: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for record in written:
        print(describe(record))
    if not written:
        print(f"{shown(args.store)}: no checkpoint range older than {args.before}; nothing removed")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    private, public, kid = new_private_key_pem()
    out = Path(args.out)
    if out.exists():
        print(f"sovhub audit keygen: {out} exists; not overwriting a key", file=sys.stderr)
        return EXIT_USAGE
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as f:
        f.write(private)
    public_path = out.with_name(out.name + ".pub")
    public_path.write_bytes(public)
    print(f"signing key {kid}: private {out} (keep it in a Secret), public {public_path}")
    return 0


def cmd_public_key(args: argparse.Namespace) -> int:
    source = "stdin" if args.private == "-" else args.private
    try:
        data = sys.stdin.buffer.read() if args.private == "-" else Path(args.private).read_bytes()
        signer = Signer.from_pem(data, source=source)
    except OSError as exc:
        print(f"sovhub audit public-key: {source}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyFileError as exc:
        print(f"sovhub audit public-key: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.buffer.write(signer.public_pem())
    print(f"key id {signer.key_id}", file=sys.stderr)
    return 0


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


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit", help="verify, query and export the audit trail")
    sub = audit.add_subparsers(dest="audit_command", required=True)

    check = sub.add_parser(
        "verify",
        help="check the tamper-evident chain of a store or export",
        description="Verify every hub's chain in STORE (a SQLite file, a PostgreSQL URL or a "
        "JSON-lines export), epoch by epoch, with the HMAC key, the signing public key, or "
        "both. Exit 0 when intact; 1 naming each changed, dropped, inserted, reordered or "
        "truncated record or epoch (a tail whose checkpoint is overdue counts as truncated); "
        "2 on bad usage; 3 when intact but, with the public key alone, records lie in an "
        "unsigned segment (written before the hub had a signing key, or whose checkpoints were "
        "lost with a spool; see "
        "--allow-unsigned-prefix for which are accepted); with --strict, also 3 when intact "
        "but not proven complete "
        "(records after the newest checkpoint whose successor is not yet due, or a retention "
        "record whose signature was not checked).",
    )
    check.add_argument("store", metavar="STORE")
    check.add_argument(
        "--key-file",
        action="append",
        help="file with an HMAC key (default: $SOVEREIGN_AUDIT_HMAC_KEY); repeat it for the "
        "keys of earlier rotations",
    )
    check.add_argument(
        "--public-key",
        action="append",
        metavar="FILE",
        help="PEM file with an Ed25519 public key that signs checkpoints (no HMAC key needed); "
        "repeat it for the keys of earlier rotations",
    )
    check.add_argument(
        "--as-of",
        help="ISO 8601 time to judge overdue checkpoints against (default: now)",
    )
    check.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        help="seconds a checkpoint may be late (delivery lag) before the tail it should have "
        f"sealed counts as truncated (default {DEFAULT_GRACE:.0f})",
    )
    check.add_argument(
        "--strict",
        action="store_true",
        help="exit 3 unless the trail is proven complete (for archives and exports: the "
        "newest records are sealed by a checkpoint)",
    )
    check.add_argument(
        "--allow-unsigned-prefix",
        action="store_true",
        help="with --public-key: accept, and still report, each hub's records from before its "
        "first signed checkpoint (an upgrade from a release without a signing key) when "
        "something signed ties them to the trail: unsigned checkpoints whose digests cover "
        "them from the epoch's first record and chain into the first signed one, or, for an "
        "earlier epoch, a later epoch that names its last record. Records no digest covers "
        "(written before checkpoints existed, in the epoch that later signed) and a hub that "
        "never signed still exit 3; an unsigned checkpoint after signing began exits 1 "
        "(default: any unsigned segment makes verify exit 3)",
    )
    check.add_argument("--json", action="store_true")
    check.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="also write the verdict as Prometheus metrics (sovereign_audit_verify_ok, …) to "
        "PATH, e.g. for node_exporter's textfile collector; the chart's alerts use them",
    )
    check.add_argument(
        "--metrics-store",
        metavar="NAME",
        help="the metrics' store label (default: STORE, without any password)",
    )
    check.set_defaults(func=cmd_verify)

    retention = sub.add_parser(
        "retain",
        help="remove records older than a time, leaving a signed record of what went",
        description="In a SQLite or PostgreSQL store, remove each hub epoch's records up to "
        "its newest checkpoint older than --before (whole checkpoint ranges only, so what "
        "stays remains provable) and write in their place one retention record signed with "
        "--signing-key, which `verify` checks with the public key.",
    )
    retention.add_argument("store", metavar="STORE")
    retention.add_argument("--before", required=True, help="ISO 8601 cut-off time")
    retention.add_argument(
        "--signing-key", required=True, metavar="FILE", help="Ed25519 private key (PEM)"
    )
    retention.add_argument("--password-file", help="PostgreSQL password, from a file")
    retention.set_defaults(func=cmd_retain)

    keygen = sub.add_parser(
        "keygen",
        help="create an Ed25519 key pair for signing checkpoints",
        description="Write a new private key to OUT (mode 0600, never overwritten) and its "
        "public key to OUT.pub, and print the key id checkpoints will name.",
    )
    keygen.add_argument("out", metavar="OUT")
    keygen.set_defaults(func=cmd_keygen)

    public_key = sub.add_parser(
        "public-key",
        help="print the public key of a signing key (e.g. the chart's generated one)",
        description="Read an Ed25519 private key (PEM; '-' for stdin, as piped from "
        "`kubectl get secret`) and print its public key as PEM, for `verify --public-key`; "
        "its key id goes to stderr.",
    )
    public_key.add_argument("private", metavar="PRIVATE_KEY")
    public_key.set_defaults(func=cmd_public_key)

    query = sub.add_parser("query", help="list events, filtered")
    query.add_argument("store", metavar="STORE")
    _add_filters(query)
    query.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    query.set_defaults(func=cmd_query)

    export = sub.add_parser("export", help="write events as JSON lines (verifiable with `verify`)")
    export.add_argument("store", metavar="STORE")
    _add_filters(export)
    export.set_defaults(func=cmd_export)
