"""Thirty JupyterLab servers asked for at once: with the readiness probe and without (#18).

The first probe of #18: 30 users of one group spawning together in the sandbox,
each server a real JupyterLab process (the process kubelet, not light pods), on
this 2-core machine. Without a readiness probe KubeSpawner counts a container
ready as soon as its process runs, and JupyterHub's ``http_timeout`` (30 s), not
``start_timeout``, decides whether a starved JupyterLab made it. With the probe
(Sovereign Hub's default) the spawn waits for the server's own ``api`` to
answer, within ``start_timeout``.

Both runs use the same hub (the sandbox's), users, policy and settings, one
after the other; only ``SovereignSpawner.readiness_probe`` differs. Each user
logs in through the real OIDC provider, asks for the CPU profile in the US
region, waits for ready, calls ``/user/<name>/api/status`` through the proxy,
idles and stops (``sovereign_hub.sandbox.loadtest``).

    python benchmarks/bench_burst.py --users 30 --out benchmarks/results/burst-30.md
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sovereign_hub.sandbox.loadtest import LoadEnvironment, LoadPlan, Report, run_apart
from sovereign_hub.sandbox.loadtest.plan import Choice, SimUser

ROOT = Path(__file__).resolve().parent.parent


def users(count: int) -> list[SimUser]:
    """``count`` US analysts, all asking for the small CPU profile in the US region."""
    choice = Choice(group="us-analysts", profile="cpu-small", region="us")
    return [SimUser(f"burst-{i:03d}", choice, arrives=0.0) for i in range(count)]


def run(probe: bool, count: int, start_timeout: float, state: Path) -> tuple[Report, float]:
    """One burst against a fresh hub; the report and the wall time."""

    def config(_cluster: object) -> str:
        return (
            f"\nc.SovereignSpawner.readiness_probe = {probe!r}\n"
            f"c.SovereignSpawner.start_timeout = {start_timeout!r}\n"
            # Every spawn at once: JupyterHub's limits must not spread them out.
            "c.JupyterHub.concurrent_spawn_limit = 0\n"
        )

    people = users(count)
    plan = LoadPlan(
        users=count,
        concurrency=count,
        arrival="burst",
        ramp_seconds=0.0,
        idle_seconds=5.0,
        ready_timeout=start_timeout + 60,
        deadline_seconds=start_timeout + 600,
        spawn_together=True,
    )
    with LoadEnvironment(
        people, state, extra_config=config, concurrency=count, light_pods=False
    ) as env:
        started = time.monotonic()
        report = run_apart(env.hub.url, people, plan)
        return report, time.monotonic() - started


def causes(report: Report) -> Counter[str]:
    """Why spawns failed, by the hub's message with the user's name and address taken out."""
    return Counter(
        re.sub(r"http://[^/]+", "http://<pod>", r.detail.replace(r.name, "<user>"))[:160]
        for r in report.results
        if r.outcome != "ready"
    )


def summary(runs: dict[str, tuple[Report, float]], count: int, start_timeout: float) -> str:
    lines = [
        f"# {count} JupyterLab servers at once, with and without the readiness probe",
        "",
        f"Load: {count} users of one group log in, then all ask for `cpu-small` in `us` at "
        f"once; real JupyterLab processes (process kubelet), `start_timeout` "
        f"{start_timeout:.0f} s, JupyterHub's `http_timeout` left at 30 s, "
        f"`concurrent_spawn_limit` off. Machine: {os.cpu_count()} cores, load average at the "
        f"end {os.getloadavg()[0]:.1f}.",
        "",
        "| measure | " + " | ".join(runs) + " |",
        "| --- | " + " | ".join("---" for _ in runs) + " |",
    ]

    def row(name: str, values: list[str]) -> None:
        lines.append(f"| {name} | " + " | ".join(values) + " |")

    reports = [r for r, _ in runs.values()]
    row("servers ready", [str(r.outcomes()["ready"]) for r in reports])
    row("spawns failed", [str(sum(v for k, v in r.outcomes().items() if k != "ready"))
                          for r in reports])  # fmt: skip
    for q in (50, 95, 99):
        times = [r.percentile(q) for r in reports]
        row(f"time to ready p{q} (s)", [f"{t:.1f}" if t is not None else "n/a" for t in times])
    row("wall time (s)", [f"{seconds:.0f}" for _, seconds in runs.values()])
    lines += ["", "Why spawns failed:", ""]
    for name, (report, _) in runs.items():
        found = causes(report)
        lines.append(f"- **{name}**: " + ("none" if not found else ""))
        lines += [f"  - {n} x {message}" for message, n in found.most_common(5)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=30, help="servers asked for at once")
    parser.add_argument(
        "--start-timeout", type=float, default=600.0, help="the spawner's start_timeout (s)"
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown summary here")
    args = parser.parse_args(argv)
    runs: dict[str, tuple[Report, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        for name, probe in (("without the probe", False), ("with the probe", True)):
            print(f"{name}: {args.users} JupyterLab servers at once…", flush=True)
            runs[name] = run(probe, args.users, args.start_timeout, Path(tmp) / name.split()[0])
    text = summary(runs, args.users, args.start_timeout)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
