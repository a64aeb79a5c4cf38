"""What SovereignSpawner adds per spawn, against stock KubeSpawner on the same run (issue #4).

1. CPU cost of preparing a spawn. Ours: SovereignSpawner checks the options,
   decides (with the GPU ledger), overlays the plan, builds the pod (including
   the restricted-standard check) and the home claim. Stock: KubeSpawner with
   the same image, resources, placement, labels, environment and volumes
   builds the pod and PVC manifests. Three cases, reported per spawn and as a
   ratio:

   - *same profile*: a hub with one profile, stock configured with it. Like
     for like; target at most 1.25x.
   - *alternating, stock with profile_list*: a hub with several profiles, stock
     configured as Zero to JupyterHub does it, one spawner whose `profile_list`
     overrides are applied on each spawn. Like for like; target at most 1.25x.
   - *alternating, stock pre-configured per profile*: a floor, not an install.
     Each stock spawner already holds the next pod's settings, which no
     JupyterHub spawner can when its user changes profile; reported so the
     cost of switching a dozen traits stays visible.
2. Kubernetes API requests per spawn: a real JupyterHub with each spawner
   starts one user's server on the emulated cluster; the API server counts
   the requests made between the start request and the server being ready
   (target: no more than stock KubeSpawner).

Run: `make bench` or `python benchmarks/bench_spawner.py [--json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import kubernetes_asyncio.config.kube_config as kube_config
from jupyterhub.utils import maybe_future
from kubespawner import KubeSpawner

from sovereign_hub.identity import identity_from
from sovereign_hub.policy import SpawnRequest, load_policy
from sovereign_hub.sandbox.hubprocess import Hub
from sovereign_hub.sandbox.kube.cluster import Cluster, write_kubeconfig
from sovereign_hub.sandbox.kube.inventory import load_inventory
from sovereign_hub.spawner import SovereignSpawner
from sovereign_hub.spawner.options import parse_user_options
from sovereign_hub.spawner.overlay import MANAGED_TRAITS
from sovereign_hub.spawner.quota import GpuLedger
from sovereign_hub.spawner.security import RESTRICTED_DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
POLICY_PATH = ROOT / "examples" / "policy.yaml"
NODES = ROOT / "tests" / "data" / "nodes.yaml"
SINGLEUSER = Path(sys.executable).with_name("jupyterhub-singleuser")


PROFILES = ("gpu-a100", "cpu-small")
TARGET = 1.25
SAME = "same profile"
PROFILE_LIST = "alternating profiles, stock with profile_list"
FLOOR = "alternating profiles, stock pre-configured per profile (floor)"
# What the plan and the secure defaults set: the stock spawner gets the same values.
TRAITS = (*MANAGED_TRAITS, *RESTRICTED_DEFAULTS)


async def prepare_ours(spawner: SovereignSpawner, ledger: GpuLedger, profile: str) -> None:
    """What SovereignSpawner does before KubeSpawner creates the pod (no I/O)."""
    choice = parse_user_options({"profile": profile, "region": "eu"})
    identity = identity_from("ana", ["eu-researchers"], None)
    request = SpawnRequest(choice.profile or "", datetime.now(UTC), region=choice.region)
    decision = ledger.decide_and_hold(("ana", ""), identity, request, _POLICY)
    plan = decision.plan  # type: ignore[union-attr]
    home = spawner.apply_plan(plan)
    spawner.home_claim(plan, home)
    pod = await spawner.get_pod_manifest()
    # KubeSpawner calls the hook next, as here: our restricted check.
    await maybe_future(spawner.modify_pod_hook(spawner, pod))


async def prepare_stock(spawner: KubeSpawner) -> None:
    spawner.get_pvc_manifest()
    await spawner.get_pod_manifest()


async def prepare_stock_profile_list(spawner: KubeSpawner, profile: str) -> None:
    """Stock KubeSpawner as Zero to JupyterHub runs it: the chosen profile's overrides first."""
    spawner.user_options = {"profile": profile}
    await spawner.load_user_options()
    spawner.get_pvc_manifest()
    await spawner.get_pod_manifest()


async def cpu_cost(rounds: int, blocks: int = 5) -> dict:
    ours = SovereignSpawner(_mock=True, namespace="hub", policy_file=str(POLICY_PATH))
    ledger = GpuLedger()
    # Stock KubeSpawner, one configured per profile with what the plan produced: the same pods.
    stock = {}
    for profile in PROFILES:
        await prepare_ours(ours, ledger, profile)
        stock[profile] = KubeSpawner(
            _mock=True,
            namespace="hub",
            storage_class="ssd-eu",
            storage_capacity="10Gi",
            **{n: getattr(ours, n) for n in TRAITS},
        )
    # Stock KubeSpawner with a z2jh-style profile_list: one spawner, the profile's
    # overrides applied on every spawn, as a hand-tuned Zero to JupyterHub install does.
    overrides = {}
    for profile in PROFILES:
        await prepare_ours(ours, ledger, profile)
        overrides[profile] = {n: getattr(ours, n) for n in MANAGED_TRAITS}
    with_profiles = KubeSpawner(
        _mock=True,
        namespace="hub",
        storage_class="ssd-eu",
        storage_capacity="10Gi",
        profile_list=[
            {"slug": p, "display_name": p, "kubespawner_override": overrides[p]} for p in PROFILES
        ],
        **{n: getattr(ours, n) for n in RESTRICTED_DEFAULTS},
    )
    results = {}
    for mode, sequence, profile_list in (
        (SAME, ["gpu-a100"], False),
        (FLOOR, list(PROFILES), False),
        (PROFILE_LIST, list(PROFILES), True),
    ):
        # Rounds alternate stock and ours, so a slow spell of the machine hits both; the
        # rounds are cut into blocks and the ratio reported is the median block's.
        stock_all: list[float] = []
        ours_all: list[float] = []
        ratios = []
        for _ in range(blocks):
            stock_block, ours_block = [], []
            for i in range(rounds // blocks):
                profile = sequence[i % len(sequence)]
                start = time.perf_counter()
                if profile_list:
                    await prepare_stock_profile_list(with_profiles, profile)
                else:
                    await prepare_stock(stock[profile])
                stock_block.append(time.perf_counter() - start)
                start = time.perf_counter()
                await prepare_ours(ours, ledger, profile)
                ours_block.append(time.perf_counter() - start)
            ratios.append(statistics.median(ours_block) / statistics.median(stock_block))
            stock_all += stock_block
            ours_all += ours_block
        results[mode] = {
            "stock_median_us": round(statistics.median(stock_all) * 1e6, 1),
            "ours_median_us": round(statistics.median(ours_all) * 1e6, 1),
            "ratio": round(statistics.median(ratios), 3),
            "block_ratios": [round(r, 3) for r in sorted(ratios)],
            "target_ratio": None if mode == FLOOR else TARGET,
        }
    return {"rounds": rounds, "blocks": blocks, **results}


def api_requests(workdir: Path) -> dict:
    with Cluster(load_inventory(NODES), workdir / "kube") as cluster:
        assert cluster.api is not None
        counts = {}
        for label, spawner_config in (
            (
                "stock",
                f"""
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.image = "quay.io/jupyter/base-notebook@sha256:{"a" * 64}"
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.storage_capacity = "10Gi"
c.KubeSpawner.storage_class = "ssd-eu"
c.KubeSpawner.volumes = [
    {{"name": "home", "persistentVolumeClaim": {{"claimName": "claim-{{user_server}}"}}}}
]
c.KubeSpawner.volume_mounts = [{{"name": "home", "mountPath": "/home/jovyan"}}]
""",
            ),
            (
                "ours",
                f"""
c.JupyterHub.spawner_class = "sovereign"
c.SovereignSpawner.policy_file = {str(POLICY_PATH)!r}
""",
            ),
        ):
            common = f"""
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.KubeSpawner.namespace = {cluster.namespace!r}
c.KubeSpawner.cmd = [{str(SINGLEUSER)!r}]
c.KubeSpawner.args = {["--allow-root"] if os.geteuid() == 0 else []!r}
"""
            hub = Hub(
                workdir / f"hub-{label}",
                common + spawner_config,
                env={"KUBECONFIG": str(cluster.kubeconfig)},
            )
            try:
                hub.api("POST", "/users/ana")
                hub.api("POST", "/groups/eu-researchers", json={"users": ["ana"]})
                before = Counter(cluster.api.requests)
                hub.api(
                    "POST",
                    "/users/ana/server",
                    json={"profile": "cpu-small"} if label == "ours" else {},
                )
                hub.wait_for_server("ana")
                during = Counter(cluster.api.requests)
                during.subtract(before)
                hub.api("DELETE", "/users/ana/server")
                hub.wait_for_server("ana", ready=False)
            finally:
                hub.stop()
            hub_requests = {k: v for k, v in during.items() if v > 0}
            counts[label] = {
                "total": sum(hub_requests.values()),
                "by_route": dict(sorted(hub_requests.items())),
            }
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_kubeconfig(Path(tmp) / "offline", "http://127.0.0.1:9", "unused", "hub")
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(path)  # KubeSpawner loads config when built
        cpu = asyncio.run(cpu_cost(args.rounds))
        api = api_requests(Path(tmp))
    report = {"cpu": cpu, "api_requests": api}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for mode in (SAME, PROFILE_LIST, FLOOR):
            c = cpu[mode]
            target = f"target <= {c['target_ratio']}" if c["target_ratio"] else "no target"
            print(
                f"prepare a spawn, {mode}: stock KubeSpawner {c['stock_median_us']} µs, "
                f"SovereignSpawner {c['ours_median_us']} µs (median of {cpu['rounds']}): "
                f"ratio {c['ratio']} (median of {cpu['blocks']} blocks, range "
                f"{c['block_ratios'][0]}-{c['block_ratios'][-1]}; {target})"
            )
        print(
            f"API requests during one spawn: stock {api['stock']['total']}, "
            f"SovereignSpawner {api['ours']['total']}"
        )
        for label in ("stock", "ours"):
            for route, n in api[label]["by_route"].items():
                print(f"  {label:5} {n:3} {route}")
    return 0


_POLICY = load_policy(POLICY_PATH).policy

if __name__ == "__main__":
    sys.exit(main())
