"""A generic HTTPS webhook: each batch is one JSON POST.

Body: ``{"records": [...]}``, records as stored (with ``id``, ``seq``,
``prev`` and ``mac``, so the receiver can deduplicate and verify). With a
``signing_key_file``, the header ``X-Sovereign-Signature: sha256=<hex>`` is
the HMAC-SHA256 of the body under that key, as GitHub-style webhooks do.
``Idempotency-Key`` names the batch (hub, epoch, first and last sequence
numbers), the same on every retry; the epoch keeps a hub that lost its spool
and started again at seq 1 from being taken for a retry of old batches. Any
2xx answer acknowledges the batch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, ClassVar

from .http import HttpSink, secret


def idempotency_key(records: list[dict[str, Any]]) -> str:
    first, last = records[0], records[-1]
    epoch = f":{first['epoch']}" if first.get("epoch") else ""
    return f"{first['hub']}{epoch}:{first['seq']}-{last['seq']}"


class WebhookSink(HttpSink):
    name = "webhook"
    option_help: ClassVar[dict[str, str]] = {
        "signing_key_file": "A file holding the key that signs each body (HMAC-SHA256).",
        "signing_key_env": "An environment variable holding that key.",
    }

    def __init__(
        self, url: str, signing_key_file: str = "", signing_key_env: str = "", **options: Any
    ) -> None:
        super().__init__(url, **options)
        self.signing_key = secret(self.name, "signing_key", signing_key_file, signing_key_env)

    def deliver(self, records: list[dict[str, Any]]) -> None:
        body = json.dumps({"records": records}, sort_keys=True, separators=(",", ":")).encode()
        headers = {"Idempotency-Key": idempotency_key(records)}
        if self.signing_key:
            mac = hmac.new(self.signing_key.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Sovereign-Signature"] = f"sha256={mac}"
        self.post("", body, "application/json", **headers)
