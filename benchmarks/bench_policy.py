"""Policy benchmarks (issue #2).

- decide() on a policy with 200 profiles and 1,000 groups, for users in 20
  groups each: p50/p99 per call (target: p99 < 100 µs).
- decide() on the same policy with 100 datasets (20 groups' access each), as a
  ratio of p50 to the run without datasets.
- `policy check` of that policy: in process, and as the `sovhub` command
  (target: < 1 s), with the in-process time reported against a bare libyaml
  load of the same file on the same run.

Run: `make bench` or `python benchmarks/bench_policy.py [--json]`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from sovereign_hub.policy import Identity, SpawnRequest, Usage, decide, load_policy

PROFILES, GROUPS, REGIONS, CHANNELS, GROUPS_PER_USER = 200, 1000, 10, 20, 20
DATASETS, DATASET_GROUPS = 100, 20


def add_datasets(doc: dict, rng: random.Random) -> None:
    """``DATASETS`` datasets in 2 regions each, granted to groups that can run there."""
    profiles = doc["profiles"]
    usable = {
        name: set(g["regions"]) & {r for p in g["profiles"] for r in profiles[p]["regions"]}
        for name, g in doc["groups"].items()
    }
    doc["datasets"] = {}
    for i in range(DATASETS):
        regions = rng.sample(list(doc["regions"]), 2)
        groups = [g for g, where in usable.items() if where & set(regions)]
        doc["datasets"][f"d{i}"] = {
            "displayName": f"Dataset {i}",
            "mountPath": f"/data/d{i}",
            "regions": regions,
            "sources": {r: {"persistentVolumeClaim": {"claimName": f"d{i}-{r}"}} for r in regions},
            "access": [
                {"group": g, "mode": "read-write" if j % 5 == 0 else "read-only"}
                for j, g in enumerate(rng.sample(groups, DATASET_GROUPS))
            ],
        }


def make_policy(rng: random.Random, datasets: bool = False) -> str:
    regions = [f"r{i}" for i in range(REGIONS)]
    doc: dict = {
        "regions": {
            r: {"displayName": r.upper(), "nodeRegions": [f"zone-{r}"], "storageClass": f"sc-{r}"}
            for r in regions
        },
        "gpuTypes": {"a100": {"displayName": "A100", "product": "NVIDIA-A100"}},
        "channels": {
            f"c{i}": {
                "displayName": f"Channel {i}",
                "maxPinAgeDays": 90,
                "versions": [
                    {
                        "version": f"2026.{v:02d}",
                        "image": f"registry.example/c{i}@sha256:{rng.getrandbits(256):064x}",
                        "released": f"2026-{v:02d}-01",
                    }
                    for v in range(1, 6)
                ],
            }
            for i in range(CHANNELS)
        },
        "profiles": {},
        "groups": {},
    }
    for i in range(PROFILES):
        profile = {
            "displayName": f"Profile {i}",
            "channel": f"c{i % CHANNELS}",
            "cpu": {"guarantee": "500m", "limit": "2"},
            "memory": {"guarantee": "1Gi", "limit": "4Gi"},
            "regions": rng.sample(regions, 3),
        }
        if i % 2:
            profile["gpu"] = {"count": 1 + i % 2, "type": "a100"}
        doc["profiles"][f"p{i}"] = profile
    names = list(doc["profiles"])
    for g in range(GROUPS):
        granted = rng.sample(names, 10)
        group_regions = sorted({rng.choice(doc["profiles"][p]["regions"]) for p in granted})
        # Keep only grants with a region in common, as `policy check` demands.
        granted = [p for p in granted if set(doc["profiles"][p]["regions"]) & set(group_regions)]
        doc["groups"][f"team-{g:04d}"] = {
            "profiles": granted,
            "regions": group_regions,
            "gpuQuota": 16,
            "perUserGpuLimit": 4,
        }
    if datasets:
        add_datasets(doc, rng)
    return yaml.safe_dump(doc, sort_keys=False)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_decide(path: Path, rng: random.Random, calls: int) -> dict:
    policy = load_policy(path).policy
    groups = list(policy.groups)
    profiles = list(policy.profiles)
    now = datetime.now(UTC)
    usage = Usage({g: {"someone": rng.randint(0, 12)} for g in rng.sample(groups, 300)})
    cases = []
    for i in range(calls):
        identity = Identity(f"user{i % 500}", frozenset(rng.sample(groups, GROUPS_PER_USER)))
        cases.append(
            (
                identity,
                SpawnRequest(rng.choice(profiles), now, region=rng.choice([None, "r1", "r2"])),
            )
        )
    for identity, request in cases[:1000]:  # warm-up
        decide(identity, request, policy, usage)
    samples, allowed, mounts = [], 0, 0
    clock = time.perf_counter_ns
    for identity, request in cases:
        start = clock()
        decision = decide(identity, request, policy, usage)
        samples.append((clock() - start) / 1000)
        allowed += decision.allowed
        mounts += len(decision.plan.datasets) if decision.allowed else 0
    return {
        "calls": calls,
        "allowed": allowed,
        "mounts": mounts,
        "p50_us": round(statistics.median(samples), 1),
        "p99_us": round(percentile(samples, 0.99), 1),
        "max_us": round(max(samples), 1),
        "target_p99_us": 100,
    }


def bench_check(path: Path, rounds: int) -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    text = path.read_bytes()
    check, bare = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        load_policy(path)
        check.append(time.perf_counter() - start)
        start = time.perf_counter()
        yaml.load(text, Loader=loader)  # noqa: S506 - CSafeLoader is the safe loader
        bare.append(time.perf_counter() - start)
    sovhub = Path(sys.executable).with_name("sovhub")
    cli = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([str(sovhub), "policy", "check", str(path)], check=True, capture_output=True)  # noqa: S603
        cli.append(time.perf_counter() - start)
    return {
        "file_bytes": len(text),
        "in_process_s": round(min(check), 4),
        "bare_libyaml_load_s": round(min(bare), 4),
        "ratio_to_bare_load": round(min(check) / min(bare), 2),
        "cli_wall_s": round(min(cli), 3),
        "target_cli_s": 1.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large-policy.yaml"
        path.write_text(make_policy(random.Random(2026)))
        with_datasets = Path(tmp) / "large-policy-datasets.yaml"
        with_datasets.write_text(make_policy(random.Random(2026), datasets=True))
        # The same seed for both runs: the same users and requests, with and without datasets.
        result = {
            "policy": {"profiles": PROFILES, "groups": GROUPS, "groupsPerUser": GROUPS_PER_USER},
            "decide": bench_decide(path, random.Random(1), args.calls),
            "decide_with_datasets": bench_decide(with_datasets, random.Random(1), args.calls),
            "check": bench_check(path, rounds=5),
        }
        result["decide_with_datasets"]["ratio_p50_to_without"] = round(
            result["decide_with_datasets"]["p50_us"] / result["decide"]["p50_us"], 2
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        d, c = result["decide"], result["check"]
        print(
            f"decide(): {d['calls']} calls ({d['allowed']} allowed): p50 {d['p50_us']} µs, "
            f"p99 {d['p99_us']} µs, max {d['max_us']} µs (target p99 < 100 µs)"
        )
        w = result["decide_with_datasets"]
        print(
            f"decide() with {DATASETS} datasets ({w['mounts']} mounts planned): p50 "
            f"{w['p50_us']} µs = {w['ratio_p50_to_without']}x without, p99 {w['p99_us']} µs"
        )
        print(
            f"policy check ({c['file_bytes']:,} bytes): {c['in_process_s']} s in process = "
            f"{c['ratio_to_bare_load']}x a bare libyaml load ({c['bare_libyaml_load_s']} s); "
            f"`sovhub policy check` {c['cli_wall_s']} s wall (target < 1 s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
