"""Faults during a spawn storm: the hub SIGKILLed while spawns are pending.

A real hub and proxy with the Sovereign spawner, on the emulated cluster
(Kubernetes is emulated). Spawned servers run ``sleep`` so they stay pending
(cheap) while the hub is killed. After the restart, every pod must belong to a
server the hub knows, and the hub's GPU ledger must hold exactly the GPUs of
the GPU pods on the cluster: a pod the hub forgot would hold a GPU no quota
counts.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests
import yaml

from sovereign_hub.sandbox.hubprocess import Hub
from tests.conftest import ROOT
from tests.hubs import sovereign_hub_config
from tests.test_spawn_api_fuzz import LEDGER_HANDLER

GPU_USERS = [f"gpu{i:02d}" for i in range(6)]
CPU_USERS = [f"cpu{i:02d}" for i in range(10)]


def config(kube, policy) -> str:
    return "\n".join(
        [
            *sovereign_hub_config(kube, policy),
            "c.JupyterHub.cleanup_servers = False",
            LEDGER_HANDLER,
        ]
    )


async def test_a_hub_killed_mid_storm_leaves_no_orphan_pod_and_no_uncounted_gpu(
    kube, core, tmp_path
):
    doc = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    doc["groups"]["eu-researchers"].update(gpuQuota=2, perUserGpuLimit=1)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False))
    text = config(kube, policy)
    env = {"KUBECONFIG": str(kube.kubeconfig)}
    hub = Hub(tmp_path / "hub", text, env=env)
    restarted = None
    try:
        users = GPU_USERS + CPU_USERS
        assert hub.api("POST", "/users", json={"usernames": users}).ok
        assert hub.api("POST", "/groups/eu-researchers", json={"users": users}).ok

        def spawn(user: str) -> int:
            profile = "gpu-a100" if user in GPU_USERS else "cpu-small"
            body = {"profile": profile, "region": "eu"}
            return hub.api("POST", f"/users/{user}/server", json=body, timeout=60).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = dict(zip(users, pool.map(spawn, users), strict=True))
        # Under load a refusal can come after slow_spawn_timeout (a 202 first), so the
        # quota is checked on the cluster below, not on these statuses.
        assert all(status in (201, 202, 403) for status in statuses.values()), statuses
        killed_at = time.monotonic()
        hub.process.kill()  # SIGKILL: no cleanup, no state saved after this instant
        hub.process.wait()

        restarted = Hub(tmp_path / "hub", text, env=env)
        recovered = time.monotonic() - killed_at
        print(f"\nhub SIGKILLed mid-storm: healthy again after {recovered:.1f} s")

        # The invariant holds right after the restart and once the hub has dealt with the
        # servers it found (checked their pods, stopped those it could not reach).
        for settle in (0, 20):
            time.sleep(settle)
            await no_orphans_and_exact_holds(restarted, core, kube, users)
    finally:
        for h in (restarted, hub):
            if h is not None:
                h.stop()


async def no_orphans_and_exact_holds(hub: Hub, core, kube, users: list[str]) -> None:
    pods = (await core.list_namespaced_pod(kube.namespace)).items
    known = {u for u in users if hub.api("GET", f"/users/{u}").json().get("servers", {}).get("")}
    orphans = [
        p.metadata.name
        for p in pods
        if p.metadata.annotations["hub.jupyter.org/username"] not in known
        and not p.metadata.deletion_timestamp
    ]
    gpu_pods = {
        p.metadata.annotations["hub.jupyter.org/username"]: 1
        for p in pods
        if "nvidia.com/gpu" in (p.spec.containers[0].resources.limits or {})
        and not p.metadata.deletion_timestamp
    }
    holds = requests.get(f"{hub.url}/hub/test/gpu-holds", timeout=10).json()["gpus"]
    held = {u: n for u, n in holds.get("eu-researchers", {}).items() if n}
    assert not orphans, f"pods the restarted hub does not know: {orphans}"
    assert held == gpu_pods, f"GPU holds {held} but GPU pods {gpu_pods}"
    assert len(gpu_pods) <= 2
