"""GPU queue waits against retrying by hand, on the same arrival pattern (issue #23).

1. Waits. A simulated working day (simulated clock, real code): two groups
   share four GPUs through their quotas (``vision`` 3, ``nlp`` 1). Users
   arrive as a Poisson stream (seeded, so every run sees the same pattern:
   a morning burst of 12 arrivals, 8 vision and 4 nlp, in the first 10
   minutes, then 1.8 per hour for vision and 0.6 for nlp for 8 hours); each
   server runs an exponential time with a 60-minute mean. Two ways to get a
   GPU, on the same arrivals and durations:

   - *queue*: the hub's :class:`~sovereign_hub.spawner.waiting.WaitingRoom`
     (real ``decide``, real ledger, real fair queue);
   - *retry* (the baseline, what users do without a queue): a refused user
     tries again every 5 minutes (±50 % jitter); whoever retries first after
     a GPU frees gets it.

   Reported: median, p95 and max wait per way, and the ratios queue/retry.
2. Cost of an admission pass with 200 waiters, against one ``decide`` call
   measured in the same run.

Run: `make bench` or `python benchmarks/bench_gpuqueue.py [--json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import random
import statistics
import time
from datetime import UTC, datetime

from sovereign_hub.policy import Identity, SpawnRequest, parse_policy
from sovereign_hub.spawner.quota import GpuLedger
from sovereign_hub.spawner.waiting import Ticket, WaitingRoom

NOW = datetime(2026, 11, 29, tzinfo=UTC)
IMAGE = "registry.example/torch@sha256:" + "a" * 64
POLICY = parse_policy(
    f"""
regions:
  eu: {{displayName: EU, nodeRegions: [eu-central-1], storageClass: ssd}}
gpuTypes:
  a100: {{displayName: A100, product: NVIDIA-A100}}
channels:
  torch:
    displayName: Torch
    versions: [{{version: "1", image: "{IMAGE}", released: 2026-11-01}}]
profiles:
  gpu:
    displayName: GPU
    channel: torch
    cpu: {{guarantee: "1", limit: "2"}}
    memory: {{guarantee: 1Gi, limit: 2Gi}}
    gpu: {{count: 1, type: a100}}
    regions: [eu]
gpuQueue: {{maxWaitMinutes: 1440, expectedSessionMinutes: 120}}
groups:
  vision: {{profiles: [gpu], regions: [eu], gpuQuota: 3, perUserGpuLimit: 1}}
  nlp: {{profiles: [gpu], regions: [eu], gpuQuota: 1, perUserGpuLimit: 1}}
""",
    "bench-policy.yaml",
).policy
MINUTE = 60.0
RATES = {"vision": 1.8, "nlp": 0.6}
"""Arrivals per hour after the burst, in proportion to the quotas: about 31 GPU-hours asked
of the day's 32."""


def arrivals(seed: int = 23) -> list[tuple[float, str, str, float]]:
    """(arrival, user, group, run seconds): the morning burst, then a steady stream."""
    rng = random.Random(seed)
    out = []
    for i in range(12):
        out.append((rng.uniform(0, 10) * MINUTE, f"early{i}", ("vision", "nlp")[i % 3 == 2]))
    for group, per_hour in RATES.items():
        t = 10 * MINUTE
        n = 0
        while True:
            t += rng.expovariate(per_hour / 60) * MINUTE
            if t > 8 * 60 * MINUTE:
                break
            out.append((t, f"{group}{n}", group))
            n += 1
    out.sort()
    return [(t, u, g, rng.expovariate(1 / 60) * MINUTE) for t, u, g in out]


def _identity(user: str, group: str) -> Identity:
    return Identity(user, frozenset({group}))


async def simulate_queue(pattern) -> dict[str, float]:
    room = WaitingRoom(GpuLedger())
    events: list[tuple[float, int, str, tuple]] = []
    for i, (t, user, group, run) in enumerate(pattern):
        heapq.heappush(events, (t, i, "arrive", (user, group, run)))
    waits: dict[str, float] = {}
    joined: dict[str, tuple[float, float, Ticket]] = {}
    seq = len(pattern)
    while events:
        now, _, kind, data = heapq.heappop(events)
        if kind == "arrive":
            user, group, run = data
            ticket = room.join((user, ""), _identity(user, group), SpawnRequest("gpu", NOW), POLICY)
            assert isinstance(ticket, Ticket)  # every spawn here queues
            joined[user] = (now, run, ticket)
        else:
            room.ledger.release((data[0], ""))
        room.admit_waiting()  # the pass itself, on the simulated clock
        for user, (since, run, ticket) in list(joined.items()):
            if ticket.future.done():
                waits[user] = now - since
                seq += 1
                heapq.heappush(events, (now + run, seq, "stop", (user,)))
                del joined[user]
    return waits


def simulate_retry(pattern, seed: int = 7, every: float = 5 * MINUTE) -> dict[str, float]:
    rng = random.Random(seed)
    ledger = GpuLedger()
    events: list[tuple[float, int, str, tuple]] = []
    for i, (t, user, group, run) in enumerate(pattern):
        heapq.heappush(events, (t, i, "try", (user, group, run, t)))
    waits: dict[str, float] = {}
    seq = len(pattern)
    while events:
        now, _, kind, data = heapq.heappop(events)
        seq += 1
        if kind == "stop":
            ledger.release((data[0], ""))
            continue
        user, group, run, since = data
        decision = ledger.decide_and_hold(
            (user, ""), _identity(user, group), SpawnRequest("gpu", NOW), POLICY
        )
        if decision.allowed:
            waits[user] = now - since
            heapq.heappush(events, (now + run, seq, "stop", (user,)))
        else:
            heapq.heappush(events, (now + every * rng.uniform(0.5, 1.5), seq, "try", data))
    return waits


def summary(waits: dict[str, float]) -> dict[str, float]:
    values = sorted(w / MINUTE for w in waits.values())
    return {
        "n": len(values),
        "median_min": round(statistics.median(values), 1),
        "p95_min": round(values[int(0.95 * (len(values) - 1))], 1),
        "max_min": round(values[-1], 1),
    }


async def pass_cost(waiters: int = 200, repeat: int = 200) -> dict[str, float]:
    room = WaitingRoom(GpuLedger())
    for i in range(4):
        room.ledger.hold((f"held{i}", ""), "vision", 1)
    room.ledger.hold(("heldn", ""), "nlp", 1)
    for i in range(waiters):
        group = ("vision", "nlp")[i % 2]
        room.join((f"w{i}", ""), _identity(f"w{i}", group), SpawnRequest("gpu", NOW), POLICY)
    start = time.perf_counter()
    for _ in range(repeat):
        room.admit_waiting()
    per_pass = (time.perf_counter() - start) / repeat
    ledger = GpuLedger()
    me = _identity("one", "vision")
    start = time.perf_counter()
    for _ in range(repeat * 10):
        ledger.decide_and_hold(("one", ""), me, SpawnRequest("gpu", NOW), POLICY)
    per_decide = (time.perf_counter() - start) / (repeat * 10)
    return {
        "waiters": waiters,
        "pass_ms": round(per_pass * 1000, 3),
        "decide_us": round(per_decide * 1e6, 2),
        "pass_over_decide": round(per_pass / per_decide, 1),
    }


async def main() -> dict[str, object]:
    pattern = arrivals()
    queue = summary(await simulate_queue(pattern))
    retry = summary(simulate_retry(pattern))
    return {
        "arrivals": len(pattern),
        "queue": queue,
        "retry": retry,
        "ratio_median": round(queue["median_min"] / max(retry["median_min"], 0.1), 2),
        "ratio_p95": round(queue["p95_min"] / max(retry["p95_min"], 0.1), 2),
        "ratio_max": round(queue["max_min"] / max(retry["max_min"], 0.1), 2),
        "cost": await pass_cost(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    result = asyncio.run(main())
    if parser.parse_args().json:
        print(json.dumps(result, indent=2))
    else:
        q, r = result["queue"], result["retry"]
        print(f"GPU queue vs retry every 5 min, {result['arrivals']} arrivals, 4 GPUs:")
        for name, s in (("queue", q), ("retry", r)):
            print(
                f"  {name:<6} median {s['median_min']:6.1f} min  p95 {s['p95_min']:6.1f} min  "
                f"max {s['max_min']:6.1f} min"
            )
        print(
            f"  queue/retry: median {result['ratio_median']}x, p95 {result['ratio_p95']}x, "
            f"max {result['ratio_max']}x"
        )
        c = result["cost"]
        print(
            f"admission pass with {c['waiters']} waiters: {c['pass_ms']} ms "
            f"= {c['pass_over_decide']}x one decide() ({c['decide_us']} us)"
        )
