"""What the audit viewer asks of a store: validated filters, cursors, sessions.

The queries themselves belong to the store plug-ins (:mod:`..sinks.readable`),
the same code that writes each store; the viewer holds no SQL. Its cursors
are the last row's ``(time, id)``, opaque to the browser.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..schemas import readable_events
from ..sinks.readable import OUTCOMES
from ..store import Filters, open_store

# Every family of event a person can filter by (all the schema files' but the trail's proofs).
EVENTS = readable_events()
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?Z?)?$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class BadFilter(ValueError):
    """A filter value that is not allowed; the message says which and what is."""


@dataclass(frozen=True, slots=True)
class Query:
    user: str = ""
    event: str = ""
    since: str = ""
    until: str = ""
    region: str = ""
    digest: str = ""
    outcome: str = ""

    @classmethod
    def parse(cls, raw: dict[str, str]) -> Query:
        """Validate filter values from a request; raises :class:`BadFilter` naming the field."""
        values = {k: (raw.get(k) or "").strip() for k in cls.__dataclass_fields__}
        for name, value in values.items():
            if len(value) > 256:
                raise BadFilter(f"{name}: at most 256 characters")
        if values["event"] and values["event"] not in EVENTS:
            raise BadFilter(f"event: {values['event']!r} is not one of {', '.join(EVENTS)}")
        if values["outcome"] and values["outcome"] not in OUTCOMES:
            raise BadFilter(f"outcome: must be one of {', '.join(OUTCOMES)}")
        for name in ("since", "until"):
            if values[name] and not _TIME.match(values[name]):
                raise BadFilter(
                    f"{name}: an ISO 8601 date or time, e.g. 2026-11-26 or 2026-11-26T09:30"
                )
        if values["digest"] and not _DIGEST.match(values["digest"]):
            raise BadFilter("digest: sha256: followed by 64 hexadecimal digits")
        return cls(**values)

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    def filters(self) -> Filters:
        """The store's filters (an empty value filters nothing); ``outcome`` is apart."""
        return Filters(**{name: getattr(self, name) for name in Filters.__dataclass_fields__})


def encode_cursor(row: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps([row["time"], row["id"]]).encode()).decode()


def decode_cursor(text: str) -> tuple[str, str]:
    try:
        time, ident = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (ValueError, TypeError):
        raise BadFilter("after: not a cursor this viewer gave out") from None
    if not (isinstance(time, str) and isinstance(ident, str)):
        raise BadFilter("after: not a cursor this viewer gave out")
    return time, ident


class Store:
    """The viewer's view of one audit store: its store plug-in (:mod:`..sinks.readable`),
    which holds every query, with the viewer's cursors and sessions on top."""

    def __init__(self, location: str, password_file: str = "", pool_size: int = 4) -> None:
        self.location = location
        self.password = Path(password_file).read_text().strip() if password_file else ""
        self.backend = open_store(location, self.password, pool_size=pool_size)

    def close(self) -> None:
        self.backend.close()

    def page(
        self, query: Query, after: str = "", limit: int = 50
    ) -> tuple[list[dict[str, Any]], str]:
        """Up to ``limit`` records, newest first, after the cursor; and the next cursor."""
        position = decode_cursor(after) if after else None
        rows, more = self.backend.page(query.filters(), query.outcome, position, limit)
        return rows, (encode_cursor(rows[-1]) if more and rows else "")

    def iterate(self, query: Query) -> Iterator[dict[str, Any]]:
        """Every matching record, oldest first (exports)."""
        return self.backend.listing(query.filters(), query.outcome)

    def sessions(self, user: str, limit: int = 500) -> list[dict[str, Any]]:
        """The user's servers from request to stop, newest first, each with its events."""
        rows = list(reversed(self.backend.session_events(user, limit)))
        sessions: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        for row in rows:
            server = row["data"].get("server", "")
            if row["event"] == "spawn-requested" or current is None or current["server"] != server:
                current = {"server": server, "events": [], "outcome": "requested"}
                sessions.append(current)
            current["events"].append(row)
            data = row["data"]
            for key in ("profile", "region", "digest", "image", "node", "gpus", "gpu_type"):
                if data.get(key) not in (None, ""):
                    current[key] = data[key]
            if row["event"] == "spawn-denied":
                current["outcome"] = "refused"
                current["reasons"] = data.get("reasons", [])
            elif row["event"] == "server-started":
                current["outcome"] = "running"
            elif row["event"] == "spawn-failed":
                current["outcome"] = "failed"
            elif row["event"] == "server-stopped":
                current["outcome"] = f"stopped ({data.get('reason', 'unknown')})"
        return list(reversed(sessions))

    def share_events(self, limit: int = 5000) -> list[dict[str, Any]]:
        """The latest share grants and revocations, oldest first (for the shares page)."""
        return list(reversed(self.backend.share_events(limit)))

    def anomalies(self, limit: int = 20) -> dict[str, list[dict[str, Any]]]:
        """Refusals, failures, admins acting on others' servers, entitlement losses."""
        return self.backend.anomalies(limit)
