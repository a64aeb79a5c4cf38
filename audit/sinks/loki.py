"""Grafana Loki, through its push API (``POST /loki/api/v1/push``, JSON).

Records go into streams labelled by hub and event family: labels stay few so
Loki's index stays small, and users, regions and digests are searched in the
JSON line (``| json | subject="bob"``). Each entry is ``[<unix ns>, <line>]``,
with the event's own time. Loki drops an entry whose stream, timestamp and
line it already holds, so a batch sent twice is stored once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any, ClassVar

from ..schemas import family
from .http import HttpSink


def unix_nanoseconds(time: str) -> str:
    moment = datetime.fromisoformat(time.replace("Z", "+00:00"))
    whole = int(moment.timestamp())
    return str(whole * 1_000_000_000 + moment.microsecond * 1000)


def push_body(records: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, Any]:
    streams: dict[tuple[str, str], list[list[str]]] = defaultdict(list)
    for record in records:
        line = json.dumps(record, sort_keys=True, separators=(",", ":"))
        streams[(record["hub"], family(record["schema"]))].append(
            [unix_nanoseconds(record["time"]), line]
        )
    return {
        "streams": [
            {"stream": {**labels, "hub": hub, "event": event}, "values": values}
            for (hub, event), values in streams.items()
        ]
    }


class LokiSink(HttpSink):
    """``url`` is Loki's base URL; ``tenant`` sets ``X-Scope-OrgID`` for multi-tenant Loki."""

    name = "loki"
    option_help: ClassVar[dict[str, str]] = {
        "tenant": "The `X-Scope-OrgID` of a multi-tenant Loki (default: none).",
        "labels": "Labels added to every stream (beside `app`, `hub` and `event`).",
    }

    def __init__(
        self, url: str, tenant: str = "", labels: dict[str, str] | None = None, **options: Any
    ) -> None:
        super().__init__(url, **options)
        self.tenant = tenant
        self.labels = {"app": "sovereign-hub", **(labels or {})}

    def deliver(self, records: list[dict[str, Any]]) -> None:
        body = json.dumps(push_body(records, self.labels), separators=(",", ":")).encode()
        extra = {"X-Scope-OrgID": self.tenant} if self.tenant else {}
        self.post("/loki/api/v1/push", body, "application/json", **extra)
