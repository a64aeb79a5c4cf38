"""What spawning into a region's own cluster costs, against the hub's own cluster (issue #22).

A real JupyterHub and proxy with two emulated clusters (each its own API
server, scheduler and process kubelet) holding the same kind of node. The EU
region runs in the hub's own cluster, the US region in a cluster the policy
names. Measured in the same run, alternating EU and US:

1. spawn to ready (POST /users/<u>/server until the server is ready), per
   region, median over the rounds, and the ratio US / EU: the cost of the
   seam (a probe of the regional API server, a client and reflectors of its
   own). Target: at most 1.2x.
2. the time to refuse a US spawn once the US API server is stopped (HTTP 503
   naming the region), against the EU spawn-to-ready time.

Run: `python benchmarks/bench_regions.py [--rounds N] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from sovereign_hub.sandbox.hubprocess import Hub
from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.sandbox.kube.inventory import load_inventory

ROOT = Path(__file__).resolve().parent.parent
SINGLEUSER = Path(sys.executable).with_name("jupyterhub-singleuser")
NODE = {"allocatable": {"cpu": "16", "memory": "64Gi"}}


def cluster(tmp: Path, name: str, region_label: str, size: dict = NODE) -> Cluster:
    """An emulated cluster of one CPU node of ``size`` in the node region ``region_label``."""
    inventory = tmp / f"{name}.yaml"
    node = {"name": f"{name}-cpu-1", "labels": {"topology.kubernetes.io/region": region_label}}
    inventory.write_text(yaml.safe_dump({"nodes": [{**node, **size}]}))
    return Cluster(load_inventory(inventory), tmp / f"kube-{name}").start()


def hub_for(tmp: Path, eu: Cluster, us: Cluster) -> Hub:
    doc = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    doc["regions"]["us"]["cluster"] = {"name": "us-east", "kubeconfig": str(us.kubeconfig)}
    doc["groups"]["everyone"] = {"profiles": ["cpu-small"], "regions": ["eu", "us"]}
    return start_hub(tmp, eu, doc)


def start_hub(tmp: Path, eu: Cluster, doc: dict, extra: tuple[str, ...] = ()) -> Hub:
    """A hub in ``eu``'s cluster with the policy ``doc``, dummy sign-in and ``extra`` config."""
    policy = tmp / "policy.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False))
    settings = {
        "policy_file": str(policy),
        "namespace": eu.namespace,
        "scheduler_name": eu.scheduler_name,
        "cmd": [str(SINGLEUSER)],
        "args": ["--allow-root"] if os.geteuid() == 0 else [],
        "start_timeout": 60,
        "http_timeout": 60,
    }
    config = "\n".join(
        [
            'c.JupyterHub.authenticator_class = "dummy"',
            "c.Authenticator.allow_all = True",
            'c.JupyterHub.spawner_class = "sovereign"',
            *(f"c.SovereignSpawner.{k} = {v!r}" for k, v in settings.items()),
            *extra,
        ]
    )
    return Hub(tmp / "hub", config, env={"KUBECONFIG": str(eu.kubeconfig)})


def spawn_to_ready(hub: Hub, user: str, region: str) -> float:
    began = time.perf_counter()
    response = hub.api(
        "POST", f"/users/{user}/server", json={"profile": "cpu-small", "region": region}
    )
    if response.status_code not in (201, 202):
        raise RuntimeError(f"{user} in {region}: {response.status_code} {response.text}")
    hub.wait_for_server(user)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        eu = cluster(tmp, "eu", "eu-central-1")
        us = cluster(tmp, "us", "us-east-1")
        hub = hub_for(tmp, eu, us)
        try:
            users = [f"u{i}" for i in range(args.rounds * 2 + 1)]
            for user in users:
                hub.api("POST", f"/users/{user}")
            hub.api("POST", "/groups/everyone", json={"users": users})
            times: dict[str, list[float]] = {"eu": [], "us": []}
            for i in range(args.rounds):
                for j, region in enumerate(("eu", "us")):
                    times[region].append(spawn_to_ready(hub, users[2 * i + j], region))
            us.stop()
            began = time.perf_counter()
            refused = hub.api(
                "POST", f"/users/{users[-1]}/server", json={"profile": "cpu-small", "region": "us"}
            )
            refusal = time.perf_counter() - began
            if refused.status_code != 503 or "Region 'us'" not in refused.text:
                raise RuntimeError(f"expected a 503 naming the region: {refused.text}")
        finally:
            hub.stop()
            us.stop()
            eu.stop()
    eu_median, us_median = statistics.median(times["eu"]), statistics.median(times["us"])
    result = {
        "rounds": args.rounds,
        "spawn_to_ready_eu_hub_cluster_s": round(eu_median, 3),
        "spawn_to_ready_us_own_cluster_s": round(us_median, 3),
        "ratio_us_over_eu": round(us_median / eu_median, 3),
        "refusal_us_down_s": round(refusal, 3),
        "ratio_refusal_over_eu_spawn": round(refusal / eu_median, 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"spawn to ready, EU (hub's own cluster):  {eu_median:.3f} s (median of {args.rounds})")
    print(f"spawn to ready, US (its own cluster):    {us_median:.3f} s")
    print(f"ratio US / EU:                           {result['ratio_us_over_eu']:.2f}x")
    print(f"US spawn refused, US API server stopped: {refusal:.3f} s")
    print(f"ratio refusal / EU spawn:                {result['ratio_refusal_over_eu_spawn']:.2f}x")


if __name__ == "__main__":
    main()
