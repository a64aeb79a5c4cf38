"""Signed checkpoints: what lets anyone holding a public key prove a trail complete.

Modelled on AWS CloudTrail's digest files: at intervals the writer signs a
statement of what it has written since its previous statement (there, the
log files' SHA-256 hashes; here, a SHA-256 over the records' hashes), and
each statement names the one before it, so a removed statement breaks the
sequence. Unlike CloudTrail's digests, which live beside the logs, a
checkpoint is itself a record of the chain, stored by every sink like any
other, so it reaches each store in order with the records it covers.

A checkpoint covers the records ``first_seq..last_seq`` of one hub's epoch:

- ``digest``: SHA-256 of the concatenated *leaf hashes* of those records,
  where a record's leaf hash is SHA-256 of its canonical body (without
  ``mac``) followed by its ``mac``. Anyone can recompute it: a changed,
  removed, inserted or reordered record changes it.
- ``previous``: SHA-256 of the previous checkpoint's signed payload in the
  same epoch ("" for the first), so checkpoints form a chain of their own.
- ``every_records``/``every_seconds``: when the next checkpoint is due, so a
  verifier can tell a tail that is merely young from one that was cut off.
- ``final``: written as the trail stopped cleanly.
- ``key_id`` and ``signature``: Ed25519 over :func:`signed_payload` (empty
  when no signing key is configured: the checkpoint then still protects the
  tail for holders of the HMAC key, who can check its MAC).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .chain import body, canonical

SYSTEM_FAMILIES = frozenset({"checkpoint", "epoch-started", "retention"})
"""Record families the trail writes about itself rather than about users."""


def leaf(record: dict[str, Any]) -> bytes:
    """The SHA-256 a checkpoint's digest is made of, for one record."""
    return hashlib.sha256(body(record) + str(record.get("mac", "")).encode()).digest()


def digest(leaves: list[bytes]) -> str:
    return hashlib.sha256(b"".join(leaves)).hexdigest()


def signed_payload(record: dict[str, Any]) -> bytes:
    """What a checkpoint's or retention record's signature covers: the record's
    identity (hub, epoch, sequence number, time, schema) and its data without
    the signature itself."""
    data = {k: v for k, v in record.get("data", {}).items() if k != "signature"}
    return canonical(
        {
            "hub": record.get("hub"),
            "epoch": record.get("epoch", ""),
            "seq": record.get("seq"),
            "time": record.get("time"),
            "schema": record.get("schema"),
            "data": data,
        }
    )


def fingerprint(record: dict[str, Any]) -> str:
    """How the next checkpoint (or a retention record) names this checkpoint."""
    return hashlib.sha256(signed_payload(record)).hexdigest()


def family_of(record: dict[str, Any]) -> str:
    """``https://…/events/checkpoint/v1`` → ``checkpoint``; "" for no schema."""
    parts = str(record.get("schema", "")).rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else ""
