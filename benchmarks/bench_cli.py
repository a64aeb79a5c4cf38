"""``sovhub`` start-up (issue #20, item 7).

Wall time of ``sovhub policy check examples/policy.yaml`` as an admin runs it
(target: < 0.5 s), against two baselines measured in the same run:

- a bare interpreter (``python -c pass``): the floor no command can beat;
- the old path: every group's module imported before the command runs, as
  ``sovhub`` did before it imported only the group asked for (needs the
  ``hub`` extra, as the old command did).

Each figure is the median of ``--rounds`` runs, alternated so that machine
load falls on all three alike. Run: ``make bench`` or
``python benchmarks/bench_cli.py [--rounds N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "examples" / "policy.yaml"
TARGET_S = 0.5

_EAGER = (
    "import sys\n"
    "import sovereign_hub.audit.cli, sovereign_hub.images.cli, sovereign_hub.policy.cli\n"
    "from sovereign_hub.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)  # noqa: S603 - our own interpreter
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sovhub = str(Path(sys.executable).with_name("sovhub"))
    check = ["policy", "check", str(POLICY)]
    runs: dict[str, list[float]] = {"bare": [], "sovhub": [], "eager": []}
    for _ in range(args.rounds):
        runs["bare"].append(_wall([sys.executable, "-c", "pass"]))
        runs["sovhub"].append(_wall([sovhub, *check]))
        runs["eager"].append(_wall([sys.executable, "-c", _EAGER, *check]))
    median = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "rounds": args.rounds,
        "bare_python_s": round(median["bare"], 3),
        "sovhub_policy_check_s": round(median["sovhub"], 3),
        "eager_imports_s": round(median["eager"], 3),
        "ratio_to_bare_python": round(median["sovhub"] / median["bare"], 1),
        "speedup_over_eager": round(median["eager"] / median["sovhub"], 1),
        "target_s": TARGET_S,
        "met": median["sovhub"] < TARGET_S,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"`sovhub policy check` {result['sovhub_policy_check_s']} s wall (target < "
            f"{TARGET_S} s: {'met' if result['met'] else 'MISSED'}) = "
            f"{result['ratio_to_bare_python']}x a bare `python -c pass` "
            f"({result['bare_python_s']} s); importing every group first, as before: "
            f"{result['eager_imports_s']} s ({result['speedup_over_eager']}x slower); "
            f"median of {args.rounds} runs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
