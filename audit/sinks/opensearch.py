"""OpenSearch or Elasticsearch, through the bulk API (``POST /_bulk``, NDJSON).

Each record is a ``create`` action with the event id as ``_id``: a record
sent twice is refused by the store with 409, which counts as delivered. Any
other per-item error fails the batch, which the shipper retries whole (the
items already created then answer 409).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from .http import HttpError, HttpSink


def bulk_body(records: list[dict[str, Any]], index: str) -> bytes:
    lines = []
    for record in records:
        lines.append(json.dumps({"create": {"_index": index, "_id": record["id"]}}))
        lines.append(json.dumps({"@timestamp": record["time"], **record}, sort_keys=True))
    return ("\n".join(lines) + "\n").encode()


class OpenSearchSink(HttpSink):
    """``url`` is the cluster's base URL; ``index`` an index, alias or data stream."""

    name = "opensearch"
    option_help: ClassVar[dict[str, str]] = {
        "index": "The index records are written to (default `sovereign-hub-audit`).",
    }

    def __init__(self, url: str, index: str = "sovereign-hub-audit", **options: Any) -> None:
        super().__init__(url, **options)
        self.index = index

    def deliver(self, records: list[dict[str, Any]]) -> None:
        response = self.post("/_bulk", bulk_body(records, self.index), "application/x-ndjson")
        answer = response.json()
        if not answer.get("errors"):
            return
        failed = [
            item.get("create", {})
            for item in answer.get("items", [])
            if item.get("create", {}).get("status", 500) not in (200, 201, 409)
        ]
        if failed:
            first = failed[0]
            reason = (first.get("error") or {}).get("type", "unknown")
            raise HttpError(
                f"{self.name}: {len(failed)} of {len(records)} records refused "
                f"(first: HTTP {first.get('status')}, {reason})"
            )
