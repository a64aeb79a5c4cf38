"""Emulated Kubernetes under a burst (issue #3).

200 pods created concurrently against the emulated cluster, capacity for 160:
reports creation time, time until every pod is Running or has its
FailedScheduling event, and whether a watch opened before the burst saw every
pod in the state a final list reports (no lost watch event).

Run: `make bench` or `python benchmarks/bench_kube.py [--pods N] [--json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import yaml
from kubernetes_asyncio import client, config

from sovereign_hub.sandbox.kube.burst import burst
from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.sandbox.kube.inventory import Inventory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    capacity = args.pods * 4 // 5
    nodes = [
        {
            "name": f"node-{i}",
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": str(capacity // 4)},
        }
        for i in range(4)
    ]
    inventory = Inventory.model_validate(yaml.safe_load(json.dumps({"nodes": nodes})))
    with tempfile.TemporaryDirectory() as tmp, Cluster(inventory, Path(tmp)) as cluster:

        async def run() -> dict:
            api = await config.new_client_from_config(config_file=str(cluster.kubeconfig))
            try:
                result = await burst(
                    client.CoreV1Api(api),
                    cluster.namespace,
                    args.pods,
                    scheduler_name=cluster.scheduler_name,
                )
            finally:
                await api.close()
            return dataclasses.asdict(result)

        report = asyncio.run(run())
    report["capacity"] = capacity
    report["correct"] = (
        report["running"] == capacity
        and report["pending"] == args.pods - capacity
        and report["watched_pods"] == args.pods
        and report["watch_agrees"]
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{args.pods} concurrent pods (capacity {capacity}): "
            f"created in {report['create_seconds']} s, "
            f"all Running or FailedScheduling after {report['settle_seconds']} s; "
            f"{report['running']} Running, {report['pending']} Pending; watch saw "
            f"{report['watched_pods']} pods, agrees with list: {report['watch_agrees']}; "
            f"correct: {report['correct']}"
        )
    return 0 if report["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
