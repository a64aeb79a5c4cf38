"""Retention: removing old records from a SQL store, leaving a signed record of what went.

Only whole checkpoint ranges are removed, from the start of an epoch up to
the newest checkpoint older than the cut-off, so what stays is still proven
by the checkpoints after it. In their place goes one ``retention`` record
(sequence number 0 of that epoch), signed with the operator's Ed25519 key,
naming how many records went, through which sequence number, the MAC the
first kept record names as ``prev`` and the fingerprint the first kept
checkpoint names as ``previous``. A later run replaces it with one covering
both runs. Verification then accepts the missing head because the signature
says so, and only then: removing records any other way is still reported.

Stores that cannot delete (JSON lines, syslog, Loki, OpenSearch, webhooks)
keep their own retention; their copy of the chain verifies whole or, once
trimmed by their own tools, as a chain that starts late.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from . import schemas
from .checkpoint import fingerprint, signed_payload
from .signing import Signer
from .sinks.table import COLUMNS, row
from .store import open_store, record_from_row


@contextmanager
def _connect(store: str, password: str) -> Iterator[tuple[Any, str]]:
    """A connection with the table at the current version, and its parameter mark, from
    the store's plug-in."""
    backend = open_store(store, password)
    with backend.maintaining() as db:
        yield db, backend.mark


def _rows(db: Any, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [record_from_row(r) for r in db.execute(sql, params).fetchall()]


def retain(
    store: str, before: str, signer: Signer, *, actor: str = "", password: str = ""
) -> list[dict[str, Any]]:
    """Remove, per hub and epoch, the checkpoint ranges older than ``before``.

    Returns the retention records written (one per epoch that lost records).
    """
    actor = actor or getpass.getuser()
    written: list[dict[str, Any]] = []
    with _connect(store, password) as (db, m):
        chains = db.execute("SELECT DISTINCT hub, epoch FROM audit_events").fetchall()
        for chain in chains:
            hub, epoch = chain["hub"], chain["epoch"]
            cut = _rows(
                db,
                f"SELECT * FROM audit_events WHERE hub = {m} AND epoch = {m} "  # noqa: S608
                f"AND event = 'checkpoint' AND time < {m} ORDER BY seq DESC LIMIT 1",
                (hub, epoch, before),
            )
            if not cut:
                continue
            checkpoint = cut[0]
            earlier = _rows(
                db,
                f"SELECT * FROM audit_events WHERE hub = {m} AND epoch = {m} "  # noqa: S608
                "AND seq = 0",
                (hub, epoch),
            )
            removed_before = int(earlier[0]["data"]["removed"]) if earlier else 0
            through_before = int(earlier[0]["data"]["through_seq"]) if earlier else 0
            through = int(checkpoint["seq"])
            if through <= through_before:
                continue
            record: dict[str, Any] = {
                "seq": 0,
                "id": str(uuid.uuid4()),
                "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
                "hub": hub,
                "schema": schemas.RETENTION,
                "version": "1",
                "prev": "",
                "mac": "",
            }
            if epoch:
                record["epoch"] = epoch
            count = db.execute(
                f"SELECT count(*) AS n FROM audit_events WHERE hub = {m} AND epoch = {m} "  # noqa: S608
                f"AND seq > 0 AND seq <= {m}",
                (hub, epoch, through),
            ).fetchone()["n"]
            data = {
                "actor": actor[:256],
                "subject": "",
                "through_seq": through,
                "removed": removed_before + int(count),
                "last_mac": checkpoint["mac"],
                "last_checkpoint": fingerprint(checkpoint),
                "before": before,
                "key_id": signer.key_id,
                "signature": "",
            }
            record["data"] = data
            data["signature"] = signer.sign(signed_payload(record))
            schemas.Validators().validate(schemas.RETENTION, data)
            marks = ",".join(m for _ in COLUMNS.split(", "))
            if m == "?":
                db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    f"DELETE FROM audit_events WHERE hub = {m} AND epoch = {m} "  # noqa: S608
                    f"AND seq <= {m}",
                    (hub, epoch, through),
                )
                db.execute(
                    f"INSERT INTO audit_events ({COLUMNS}) VALUES ({marks})",  # noqa: S608
                    row(record),
                )
                db.execute("COMMIT") if m == "?" else db.commit()
            except BaseException:
                db.execute("ROLLBACK") if m == "?" else db.rollback()
                raise
            written.append(record)
    return written


def describe(record: dict[str, Any]) -> str:
    data = record["data"]
    where = record["hub"] + (f" epoch {record['epoch']}" if record.get("epoch") else "")
    return (
        f"{where}: removed #1..#{data['through_seq']} ({data['removed']} records in all), "
        f"signed by {data['key_id']}"
    )


__all__ = ["describe", "retain"]
