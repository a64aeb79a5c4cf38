"""``python -m sovereign_hub.sandbox.loadtest``: a load run against a fresh sandbox-like hub."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from sovereign_hub.policy import load_policy
from sovereign_hub.sandbox import loadtest

from .driver import run_apart
from .environment import ROOT, LoadEnvironment
from .plan import add_plan_arguments, plan_from, population


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sovereign_hub.sandbox.loadtest", description=loadtest.__doc__
    )
    add_plan_arguments(parser, users=100, ramp_seconds=30.0)
    parser.add_argument("--json", help="also write every user's result to this file")
    args = parser.parse_args(argv)
    plan = plan_from(args)
    users = population(plan, load_policy(ROOT / "examples" / "policy.yaml").policy)
    with (
        tempfile.TemporaryDirectory(prefix="sovhub-load-") as tmp,
        LoadEnvironment(users, Path(tmp), concurrency=plan.concurrency) as env,
    ):
        report = run_apart(env.hub.url, users, plan)
        report.checks["servers running at the end"] = str(env.running_servers())
        env.hub.stop()
        verified = env.verify_audit()
        report.checks["audit verify"] = "clean" if verified.returncode == 0 else verified.stdout
        print(report.markdown())
        if args.json:
            Path(args.json).write_text(json.dumps([asdict(r) for r in report.results], indent=1))
    # Every user ended with a server, a refusal by policy, or logged in without asking one.
    return 1 if report.failures() or len(report.results) != len(users) else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
