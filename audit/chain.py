"""The tamper-evident chain: each record carries its predecessor's HMAC-SHA256.

A record's MAC covers its canonical JSON (sorted keys, no spaces), its own
sequence number and its predecessor's MAC, so changing, dropping, inserting
or reordering a record breaks the chain where it happened. Only holders of
the key (a Kubernetes Secret) can extend or re-seal it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

GENESIS = "0" * 64
"""The ``prev`` of the first record of a hub's chain."""


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def seal(record: dict[str, Any], key: bytes) -> str:
    """The MAC of ``record`` (everything but its own ``mac``)."""
    body = {k: v for k, v in record.items() if k != "mac"}
    return hmac.new(key, canonical(body), hashlib.sha256).hexdigest()


def genuine(record: dict[str, Any], key: bytes) -> bool:
    return hmac.compare_digest(str(record.get("mac", "")), seal(record, key))
