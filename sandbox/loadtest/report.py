"""What a run measured: outcomes, time-to-ready percentiles, as a Markdown table."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from .plan import LoadPlan
from .user import UserResult


@dataclass
class Report:
    plan: LoadPlan
    results: list[UserResult]
    seconds: float
    unfinished: int = 0
    """Users the deadline cut off before they arrived or finished."""
    checks: dict[str, str] = field(default_factory=dict)

    def outcomes(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results)

    def failures(self) -> list[UserResult]:
        """Users who ended neither with a server, nor refused by policy, nor logged in
        without asking for one."""
        return [r for r in self.results if r.outcome not in ("ready", "refused", "logged-in")]

    def failed_spawns(self) -> int:
        """Spawning users who ended without a server, by no refusal (a failed login too)."""
        return sum(r.spawns and r.outcome in ("failed", "timeout", "error") for r in self.results)

    def failed_logins(self) -> int:
        """Users whose login never succeeded (spawning or not)."""
        return sum(not r.logged_in for r in self.results)

    def answered_late(self) -> tuple[int, int]:
        """Spawn requests the hub answered after the browser's ``answer_seconds``: how many,
        and how many of those servers came up all the same (counted ready)."""
        late = [r for r in self.results if r.answered_late]
        return len(late), sum(r.outcome == "ready" for r in late)

    def answered_late_text(self) -> str:
        late, ready = self.answered_late()
        return f"{late} ({ready})"

    def throttled(self) -> int:
        """429 answers to spawn requests that users waited out and retried (not failures)."""
        return sum(r.throttled for r in self.results)

    def login_retries(self) -> int:
        """Logins tried again: the hub answered 503 (provider too slow), or the provider 500."""
        return sum(r.login_retries for r in self.results)

    def spawn_window(self) -> float | None:
        """From the first accepted spawn request to the last server ready, seconds."""
        ends = [
            r.asked_at + r.ready_seconds
            for r in self.results
            if r.asked_at is not None and r.ready_seconds is not None
        ]
        if not ends:
            return None
        starts = [r.asked_at for r in self.results if r.asked_at is not None]
        return max(ends) - min(starts)

    def peak_concurrent_spawns(self) -> int:
        """The most spawns pending at one moment (accepted, not yet ready)."""
        edges = []
        for r in self.results:
            if r.asked_at is not None and r.ready_seconds is not None:
                edges += [(r.asked_at, 1), (r.asked_at + r.ready_seconds, -1)]
        peak = current = 0
        for _, step in sorted(edges):
            current += step
            peak = max(peak, current)
        return peak

    def percentile(self, q: float) -> float | None:
        times = sorted(r.ready_seconds for r in self.results if r.ready_seconds is not None)
        if not times:
            return None
        if len(times) == 1:
            return times[0]
        return statistics.quantiles(times, n=100, method="inclusive")[round(q) - 1]

    def markdown(self) -> str:
        counts = self.outcomes()
        rows = [
            ("users", str(len(self.results))),
            ("concurrency", str(self.plan.concurrency)),
            ("arrival", f"{self.plan.arrival} ({self.plan.ramp_seconds:g} s)"),
            ("logged in without a server", str(counts["logged-in"])),
            ("ready", str(counts["ready"])),
            ("failed", str(self.failed_spawns())),
            ("logins failed", str(self.failed_logins())),
            ("spawn requests answered late (of which ready)", self.answered_late_text()),
            ("refused by policy", str(counts["refused"])),
            ("429s waited out and retried", str(self.throttled())),
            ("logins tried again (hub 503, provider 500)", str(self.login_retries())),
            ("gave up after repeated 429s", str(counts["throttled"])),
            ("cut off by the deadline", str(self.unfinished)),
            *[(f"time to ready p{q}", _seconds(self.percentile(q))) for q in (50, 95, 99)],
            ("wall time", f"{self.seconds:.1f} s"),
            ("most spawns pending at once (ready ones)", str(self.peak_concurrent_spawns())),
            *self.checks.items(),
        ]
        lines = ["| measure | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in rows]
        failures = self.failures()
        if failures:
            lines += ["", "First failures:", ""]
            lines += [f"- {r.name}: {r.outcome}: {r.detail}" for r in failures[:10]]
        return "\n".join(lines) + "\n"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"
