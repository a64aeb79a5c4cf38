"""The audit overview: counts a security reviewer wants first, from one store.

Logins, denials, starts and stops per day; spawn outcomes per region; the
most frequent denial reasons; GPU hours per quota group. The counts come
from the store plug-in's queries (:mod:`..sinks.readable`); reasons and GPU
hours are read from the records' JSON here, over the window only. Each
number says which timeline filter shows its events.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .query import Store

# What each daily series counts, and the timeline filter that lists those events.
SERIES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "logins": (("login",), {"event": "login"}),
    "denials": (("login-denied", "spawn-denied"), {"outcome": "refused"}),
    "starts": (("server-started",), {"event": "server-started"}),
    "stops": (("server-stopped",), {"event": "server-stopped"}),
}
# A spawn's outcome, per region: the events that end a spawn attempt.
SPAWN_OUTCOMES = {"server-started": "ok", "spawn-denied": "refused", "spawn-failed": "failed"}


@dataclass(frozen=True)
class Overview:
    days: tuple[str, ...]
    """The window's days (``YYYY-MM-DD``), oldest first."""
    series: dict[str, tuple[int, ...]]
    """Per :data:`SERIES` name, one count per day."""
    regions: dict[str, dict[str, int]]
    """Region → outcome (ok, refused, failed) → spawn attempts that ended so."""
    reasons: list[tuple[str, str, int]]
    """(code, an example message, count) of denials, most frequent first."""
    gpu_hours: dict[str, float]
    """Quota group → GPU hours used in the window (a running server counts until now)."""
    totals: dict[str, int] = field(default_factory=dict)


def _window(now: datetime, days: int) -> tuple[str, str, tuple[str, ...]]:
    """The first day, the day after the last, and every day of the window."""
    first = (now.astimezone(UTC) - timedelta(days=days - 1)).date()
    names = tuple((first + timedelta(days=i)).isoformat() for i in range(days))
    return first.isoformat(), (first + timedelta(days=days)).isoformat(), names


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def overview(store: Store, now: datetime, days: int = 14, top: int = 8) -> Overview:
    """The overview of the ``days`` days up to ``now`` (UTC)."""
    since, until, day_names = _window(now, days)
    kinds = sorted({e for events, _ in SERIES.values() for e in events})
    backend = store.backend
    daily = backend.daily_counts(since, until, kinds)
    by_region = backend.region_counts(since, until, SPAWN_OUTCOMES)
    denials = backend.event_rows(since, until, ("spawn-denied", "login-denied"))
    sessions = backend.event_rows(since, until, ("server-started", "server-stopped"))
    counts: dict[tuple[str, str], int] = {(r["day"], r["event"]): int(r["n"]) for r in daily}
    series = {
        name: tuple(sum(counts.get((d, e), 0) for e in events) for d in day_names)
        for name, (events, _) in SERIES.items()
    }
    regions: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("ok", "refused", "failed"), 0)
    )
    for r in by_region:
        regions[r["region"] or "(none)"][SPAWN_OUTCOMES[r["event"]]] += int(r["n"])
    return Overview(
        days=day_names,
        series=series,
        regions=dict(sorted(regions.items())),
        reasons=_top_reasons((r["data"] for r in denials), top),
        gpu_hours=_gpu_hours(sessions, now),
        totals={name: sum(values) for name, values in series.items()},
    )


def _top_reasons(rows: Any, top: int) -> list[tuple[str, str, int]]:
    counted: Counter[str] = Counter()
    example: dict[str, str] = {}
    for raw in rows:
        data = json.loads(raw)
        reasons = data.get("reasons") or [
            {"code": data.get("reason_code", "unknown"), "message": data.get("reason", "")}
        ]
        for reason in reasons:
            code = str(reason.get("code") or "unknown")
            counted[code] += 1
            example.setdefault(code, str(reason.get("message") or ""))
    return [(code, example[code], n) for code, n in counted.most_common(top)]


def _gpu_hours(rows: Any, now: datetime) -> dict[str, float]:
    """GPU hours per quota group: each start paired with the next stop of the same server."""
    running: dict[tuple[str, str], tuple[datetime, int, str]] = {}
    hours: dict[str, float] = defaultdict(float)
    for r in rows:
        data = json.loads(r["data"])
        key = (str(data.get("subject", "")), str(data.get("server", "")))
        if r["event"] == "server-started":
            if int(data.get("gpus") or 0) > 0:
                group = str(data.get("quota_group") or "(no group)")
                running[key] = (_time(r["time"]), int(data["gpus"]), group)
        elif key in running:
            started, gpus, group = running.pop(key)
            hours[group] += gpus * (_time(r["time"]) - started).total_seconds() / 3600
    for started, gpus, group in running.values():
        hours[group] += gpus * (now.astimezone(UTC) - started).total_seconds() / 3600
    return {g: round(h, 2) for g, h in sorted(hours.items(), key=lambda item: -item[1])}
