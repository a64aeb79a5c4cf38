"""Create many pods at once and check every one ends scheduled or correctly Pending.

Shared by the concurrency test and ``benchmarks/bench_kube.py``. A watch
opened before the burst must see every pod and agree with a final list:
that is the "no lost watch event" check.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.watch import Watch

SLEEP = "/bin/sleep"


@dataclass
class BurstResult:
    created: int
    running: int
    pending: int
    create_seconds: float
    settle_seconds: float
    watched_pods: int
    watch_agrees: bool


def _settled(pod: dict[str, Any], failed: set[str]) -> bool:
    return pod["status"].get("phase") == "Running" or pod["metadata"]["name"] in failed


async def burst(
    core: client.CoreV1Api,
    namespace: str,
    count: int,
    timeout: float = 120,
    scheduler_name: str = "default-scheduler",
) -> BurstResult:
    seen: dict[str, dict[str, Any]] = {}
    failed: set[str] = set()
    rv = (await core.list_namespaced_pod(namespace)).metadata.resource_version

    async def follow_pods() -> None:
        watch = Watch()
        method = partial(core.list_namespaced_pod, _preload_content=False)
        async with watch.stream(method, namespace=namespace, resource_version=rv) as stream:
            async for event in stream:
                raw = event["raw_object"]
                seen[raw["metadata"]["name"]] = raw

    async def follow_events() -> None:
        watch = Watch()
        method = partial(core.list_namespaced_event, _preload_content=False)
        async with watch.stream(method, namespace=namespace, resource_version=rv) as stream:
            async for event in stream:
                raw = event["raw_object"]
                if raw.get("reason") == "FailedScheduling":
                    failed.add(raw["involvedObject"]["name"])

    watchers = [asyncio.create_task(follow_pods()), asyncio.create_task(follow_events())]
    start = time.perf_counter()
    bodies = [
        {
            "metadata": {"name": f"burst-{i:03d}", "labels": {"app": "burst"}},
            "spec": {
                "schedulerName": scheduler_name,
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "c",
                        "image": "registry.example/sleep@sha256:" + "0" * 64,
                        "command": [SLEEP, "600"],
                    }
                ],
            },
        }
        for i in range(count)
    ]
    await asyncio.gather(*(core.create_namespaced_pod(namespace, b) for b in bodies))
    created = time.perf_counter() - start
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if len(seen) == count and all(_settled(p, failed) for p in seen.values()):
            break
        await asyncio.sleep(0.05)
    settle = time.perf_counter() - start
    for task in watchers:
        task.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    listed = {
        p.metadata.name: p.status.phase for p in (await core.list_namespaced_pod(namespace)).items
    }
    watched = {name: pod["status"].get("phase") for name, pod in seen.items()}
    return BurstResult(
        created=count,
        running=sum(1 for phase in listed.values() if phase == "Running"),
        pending=sum(1 for phase in listed.values() if phase == "Pending"),
        create_seconds=round(created, 3),
        settle_seconds=round(settle, 3),
        watched_pods=len(seen),
        watch_agrees=watched == listed,
    )
