"""Faults during a benchmark-sized spawn storm: recovery time of each fault (issue #21).

Runs the storm tests of ``tests/test_storm_faults.py`` (a real hub and proxy,
the emulated cluster, real PostgreSQL for the audit store) at a size CI does
not afford: more spawns (the emulated inventory grows with them), a longer API
server outage, and the audit store kept down for at least a given time. CI
runs the same tests at their default size (16 spawns, 5 s, no minimum).
Each test prints its recovery figures; this collects them.

Run: `python benchmarks/bench_storm.py [--spawns N] [--api-outage S]
[--store-outage S] [--out FILE]`. The defaults (100 spawns, 30 s, 60 s)
take several minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = "tests/test_storm_faults.py"
FIGURES = ("API server down", "proxy SIGKILLed", "audit store down")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spawns", type=int, default=100, help="spawns in the storm (>= 16)")
    parser.add_argument("--api-outage", type=float, default=30.0, help="API server down, s")
    parser.add_argument("--store-outage", type=float, default=60.0, help="audit store down, s")
    parser.add_argument("--out", type=Path, help="also write the figures as Markdown here")
    args = parser.parse_args()
    if args.spawns < 16:
        parser.error(f"--spawns {args.spawns}: at least 16 (the CI storm's size)")
    env = {
        **os.environ,
        "SOVEREIGN_STORM_SPAWNS": str(args.spawns),
        "SOVEREIGN_STORM_API_OUTAGE": str(args.api_outage),
        "SOVEREIGN_STORM_STORE_OUTAGE": str(args.store_outage),
    }
    started = time.monotonic()
    run = subprocess.run(  # noqa: S603 - our own venv's pytest on our own tests
        [sys.executable, "-m", "pytest", TESTS, "-q", "-s", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.monotonic() - started
    figures = [line.strip() for line in run.stdout.splitlines() if line.strip().startswith(FIGURES)]
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else "(no output)"
    lines = [
        f"# Spawn storm: {args.spawns} spawns, API server down {args.api_outage:.0f} s, "
        f"audit store down at least {args.store_outage:.0f} s",
        "",
        *(f"- {figure}" for figure in figures),
        "",
        f"pytest: {summary} ({took:.0f} s in all)",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    if run.returncode != 0:
        print(run.stdout[-4000:], run.stderr[-2000:], sep="\n", file=sys.stderr)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
