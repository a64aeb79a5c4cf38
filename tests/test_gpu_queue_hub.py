"""The GPU queue in a real JupyterHub and proxy, on the emulated cluster (``kube`` fixture).

Kubernetes is emulated (sandbox/kube) unless SOVEREIGN_TEST_KUBECONFIG names an
API server. Twenty users contend for four GPUs, once held back by their
group's quota and once by the nodes' free GPUs; they wait, see their place,
leave the queue, and are admitted in order as GPUs free up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

import tests.test_spawner_hub as hub_tests
from sovereign_hub.sandbox.hubprocess import Hub
from tests.conftest import eventually
from tests.test_spawner_hub import add_users, spawn

# The real hub and its policy copy, as the spawner's hub tests start them.
start_hub = hub_tests.start_hub
policy_copy = hub_tests.policy_copy

A100 = "NVIDIA-A100-SXM4-40GB"
USERS = [f"user{i:02d}" for i in range(20)]
# Spawn requests return at once (202) instead of after JupyterHub's 10 s slow-spawn wait,
# so arrivals are sequential and their order known.
FAST = "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n"


def inventory(tmp_path: Path, gpus: int) -> Path:
    path = tmp_path / "nodes.yaml"
    nodes = [
        {
            "name": "eu-cpu-1",
            "labels": {"topology.kubernetes.io/region": "eu-central-1"},
            "allocatable": {"cpu": "4", "memory": "16Gi"},
        },
        {
            "name": "eu-gpu-1",
            "labels": {
                "topology.kubernetes.io/region": "eu-central-1",
                "nvidia.com/gpu.product": A100,
            },
            "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
            "allocatable": {"cpu": "200", "memory": "1Ti", "nvidia.com/gpu": str(gpus)},
        },
    ]
    path.write_text(yaml.safe_dump({"nodes": nodes}))
    return path


@pytest.fixture
def gpus() -> int:
    return 2


@pytest.fixture
def kube(make_cluster, tmp_path, gpus):
    """The emulated cluster with one EU node of ``gpus`` A100s (parametrised per test)."""
    return make_cluster(inventory(tmp_path, gpus))


def queue_policy(policy_copy: Path, quota: int) -> Path:
    doc = yaml.safe_load(policy_copy.read_text())
    doc["groups"]["eu-researchers"].update(gpuQuota=quota, perUserGpuLimit=1)
    # Small profiles so twenty pods fit the node's CPU and memory.
    doc["profiles"]["gpu-a100"].update(
        cpu={"guarantee": "100m", "limit": "1"}, memory={"guarantee": "64Mi", "limit": "1Gi"}
    )
    policy_copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return policy_copy


def server(hub: Hub, user: str) -> dict:
    return hub.api("GET", f"/users/{user}").json().get("servers", {}).get("") or {}


def first_queue_message(hub: Hub, user: str, timeout: float = 30) -> str:
    """The first queue message on the user's progress page (its event stream)."""
    with hub.api("GET", f"/users/{user}/server/progress", stream=True, timeout=timeout) as response:
        for line in response.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                message = json.loads(line[5:]).get("message", "")
                if "in line" in message:
                    return message
    raise AssertionError(f"no queue message for {user}")


def running(hub: Hub) -> list[str]:
    return [u for u in USERS if server(hub, u).get("ready")]


def wait_until(check, timeout: float = 90, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def contend(hub: Hub) -> None:
    add_users(hub, "eu-researchers", *USERS)
    for user in USERS:
        assert spawn(hub, user, profile="gpu-a100").status_code in (201, 202)
    wait_until(lambda: len(running(hub)) == 4, what="four servers")
    # The first four got the GPUs; the sixteen others wait, no pod created for them.
    assert running(hub) == USERS[:4]
    assert all(server(hub, u).get("pending") == "spawn" for u in USERS[4:])


def stop(hub: Hub, *users: str) -> None:
    for user in users:
        assert hub.api("DELETE", f"/users/{user}/server").status_code in (202, 204)


@pytest.mark.parametrize("gpus", [8])
async def test_twenty_users_wait_for_a_four_gpu_quota_in_order(
    kube, core, start_hub, policy_copy, gpus
):
    """Quota case (emulated Kubernetes): the node has 8 GPUs, the group a 4-GPU quota."""
    hub = start_hub(queue_policy(policy_copy, quota=4), extra_config=FAST)
    contend(hub)
    pods = await core.list_namespaced_pod(kube.namespace)
    assert len(pods.items) == 4
    message = first_queue_message(hub, "user06")
    assert re.search(r"your group's GPU quota is in use\): you are number 3 of 16 in line", message)
    assert "estimated wait about 90 minutes" in message  # 3 GPUs to free, 4 serve, 120 min each

    # The admin's view: the queue per GPU type and region, in the order users see.
    listing = subprocess.run(
        [str(Path(sys.executable).with_name("sovhub")), "gpu-queue", "list", "--hub", hub.url],
        env={**os.environ, "JUPYTERHUB_API_TOKEN": hub.token},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert listing.splitlines()[0] == "a100 in eu: 16 waiting"
    assert re.search(r"^\s+3  user06\s+-\s+eu-researchers\s+1 ", listing, re.MULTILINE), listing
    metrics = requests.get(
        f"{hub.url}/hub/metrics", headers={"Authorization": f"token {hub.token}"}, timeout=30
    ).text
    assert 'sovereign_gpu_queue_length{gpu_type="a100",region="eu"} 16.0' in metrics
    # The ledger: the four running servers hold the whole quota, the sixteen waiters nothing.
    assert 'sovereign_gpu_held{quota_group="eu-researchers"} 4.0' in metrics
    assert 'sovereign_gpu_holders{quota_group="eu-researchers"} 4.0' in metrics
    assert 'sovereign_gpu_quota{quota_group="eu-researchers"} 4.0' in metrics

    # Impatience: user05 leaves the queue through the REST API (the page's Stop button).
    stop(hub, "user05")
    wait_until(lambda: not server(hub, "user05"), what="user05 to leave")
    assert "you are number 2 of 15 in line" in first_queue_message(hub, "user06")

    # Four servers stop; the next four in line, in arrival order, get their GPUs.
    stop(hub, *USERS[:4])
    wait_until(lambda: len(running(hub)) == 4 and "user04" in running(hub), what="next four")
    assert running(hub) == ["user04", "user06", "user07", "user08"]
    logs = hub.log_path.read_text(errors="replace")
    assert "gpu_queued user='user19'" in logs
    assert "gpu_admitted user='user04'" in logs
    assert re.search(r"gpu_abandoned user='user05'.*detail='cancelled'", logs)
    stop(hub, *USERS[4:])


@pytest.mark.parametrize("gpus", [4])
async def test_twenty_users_wait_for_four_free_gpus_on_the_nodes(
    kube, start_hub, policy_copy, gpus
):
    """Capacity case (emulated Kubernetes): a 20-GPU quota, but the node has 4 GPUs."""
    hub = start_hub(queue_policy(policy_copy, quota=20), extra_config=FAST)
    contend(hub)
    message = first_queue_message(hub, "user04")
    assert "(every matching GPU is in use): you are number 1 of 16 in line" in message
    stop(hub, "user01")
    wait_until(lambda: "user04" in running(hub), what="user04 admitted")
    assert running(hub) == ["user00", "user02", "user03", "user04"]
    assert "you are number 1 of 15 in line" in first_queue_message(hub, "user05")
    stop(hub, *USERS)


@pytest.mark.parametrize("gpus", [2])
async def test_places_survive_a_hub_restart(kube, start_hub, policy_copy, gpus):
    """Emulated Kubernetes: bob and carol wait behind ana's GPU; the hub restarts."""
    queue_policy(policy_copy, quota=1)
    hub = start_hub(policy_copy, cleanup_servers=False, extra_config=FAST)
    add_users(hub, "eu-researchers", "ana", "bob", "carol")
    for user in ("ana", "bob", "carol"):
        assert spawn(hub, user, profile="gpu-a100").status_code in (201, 202)
    hub.wait_for_server("ana")
    assert "number 2 of 2 in line" in first_queue_message(hub, "carol")
    hub.stop()

    hub = start_hub(policy_copy, cleanup_servers=False, extra_config=FAST)
    hub.wait_for_server("ana")  # still running, still holding the group's one GPU
    # Carol asks again first, yet bob's place, saved in the hub database, stays ahead of hers.
    assert spawn(hub, "carol", profile="gpu-a100").status_code in (201, 202)
    assert "number 2 of 2 in line" in first_queue_message(hub, "carol")
    assert spawn(hub, "bob", profile="gpu-a100").status_code in (201, 202)
    assert "number 1 of 2 in line" in first_queue_message(hub, "bob")
    stop(hub, "ana")
    hub.wait_for_server("bob")
    assert server(hub, "carol").get("pending") == "spawn"
    stop(hub, "bob", "carol")


@pytest.mark.parametrize("gpus", [2])
async def test_the_maximum_wait_outlasts_the_start_timeout_and_ends_with_a_message(
    kube, start_hub, policy_copy, gpus
):
    """Emulated Kubernetes: start_timeout is 30 s, gpuQueue.maxWaitMinutes 1."""
    doc = yaml.safe_load(queue_policy(policy_copy, quota=1).read_text())
    doc["gpuQueue"] = {"maxWaitMinutes": 1}
    policy_copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    hub = start_hub(policy_copy, extra_config=FAST)
    add_users(hub, "eu-researchers", "ana", "bob")
    assert spawn(hub, "ana", profile="gpu-a100").status_code in (201, 202)
    hub.wait_for_server("ana")
    started = time.monotonic()
    assert spawn(hub, "bob", profile="gpu-a100").status_code == 202
    events = []
    with hub.api("GET", "/users/bob/server/progress", stream=True, timeout=120) as response:
        for line in response.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if events[-1].get("failed") or events[-1].get("ready"):
                    break
    waited = time.monotonic() - started
    # JupyterHub's own 30 s start timeout did not end the wait; the policy's minute did.
    assert 55 < waited < 90, waited
    assert events[-1]["failed"] is True
    assert (
        "No NVIDIA A100 40 GB became free in European Union (Frankfurt) within 1 minute, the longest"
        in (events[-1]["message"])
    )
    log = hub.log_path.read_text(errors="replace")
    assert re.search(r"gpu_abandoned user='bob'.*detail='max_wait'", log)
    assert not server(hub, "bob")


async def _placeholder_holding_the_gpu(core, kube) -> dict:
    """A placeholder (priority -10, labelled as the chart labels them) on the node's one GPU."""
    scheduling = client.SchedulingV1Api(core.api_client)
    await scheduling.create_priority_class(
        {"metadata": {"name": "users"}, "value": 0, "description": "user servers"}
    )
    await scheduling.create_priority_class(
        {"metadata": {"name": "placeholders"}, "value": -10, "preemptionPolicy": "Never"}
    )
    placeholder = {
        "metadata": {
            "name": "placeholder-0",
            "labels": {"app.kubernetes.io/component": "user-placeholder"},
        },
        "spec": {
            "schedulerName": kube.scheduler_name,
            "priorityClassName": "placeholders",
            "terminationGracePeriodSeconds": 0,
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            "containers": [
                {
                    "name": "pause",
                    "image": "registry.k8s.io/pause@sha256:" + "e" * 64,
                    "command": [sys.executable, "-c", "import time; time.sleep(600)"],
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ],
        },
    }
    await core.create_namespaced_pod(kube.namespace, placeholder)
    assert await eventually(lambda: is_phase(core, kube, "placeholder-0", "Running"), timeout=60)
    return placeholder


@pytest.mark.parametrize("gpus", [1])
async def test_a_users_gpu_server_preempts_a_placeholder_and_starts_at_once(
    kube, core, start_hub, policy_copy, gpus
):
    """Emulated Kubernetes: the node's one A100 is held by a placeholder (priority -10, as the
    chart's); ana's server, at the user servers' priority, evicts it and starts without
    queueing, and the placeholder put back (as its StatefulSet would) waits Pending."""
    placeholder = await _placeholder_holding_the_gpu(core, kube)
    hub = start_hub(
        queue_policy(policy_copy, quota=4),
        extra_config=FAST
        + "c.SovereignSpawner.priority_class_name = 'users'\n"
        + "c.SovereignSpawner.gpu_queue_user_priority = 0\n",
    )
    add_users(hub, "eu-researchers", "ana")
    started = time.monotonic()
    assert spawn(hub, "ana", profile="gpu-a100").status_code in (201, 202)
    hub.wait_for_server("ana")
    # Admitted at once (no queue message) and started within the ordinary start timeout.
    assert time.monotonic() - started < 60
    log = hub.log_path.read_text(errors="replace")
    assert "gpu_queued user='ana'" not in log
    pod = await core.read_namespaced_pod("jupyter-ana", kube.namespace)
    assert (pod.spec.priority, pod.spec.node_name) == (0, "eu-gpu-1")
    events = await core.list_namespaced_event(
        kube.namespace, field_selector="involvedObject.name=placeholder-0"
    )
    assert any(e.reason == "Preempted" for e in events.items)
    await core.create_namespaced_pod(kube.namespace, placeholder)
    assert await eventually(
        lambda: is_phase(core, kube, "placeholder-0", "Pending:Unschedulable"), timeout=60
    )
    stop(hub, "ana")


@pytest.mark.parametrize("gpus", [1])
async def test_without_the_user_priority_a_placeholders_gpu_is_taken_and_users_queue(
    kube, core, start_hub, policy_copy, gpus
):
    """Emulated Kubernetes: the same placeholder, but the hub is not told user pods may preempt
    (no ``gpu_queue_user_priority``). KubeSpawner's pod reflector never shows placeholders;
    the queue lists them itself, so ana waits for the GPU the placeholder holds, and is
    admitted when the placeholder goes (its pool scaled down)."""
    await _placeholder_holding_the_gpu(core, kube)
    hub = start_hub(queue_policy(policy_copy, quota=4), extra_config=FAST)
    add_users(hub, "eu-researchers", "ana")
    assert spawn(hub, "ana", profile="gpu-a100").status_code in (201, 202)
    message = first_queue_message(hub, "ana")
    assert "(every matching GPU is in use): you are number 1 of 1 in line" in message
    assert await is_phase(core, kube, "placeholder-0", "Running")
    await core.delete_namespaced_pod("placeholder-0", kube.namespace)
    hub.wait_for_server("ana")
    stop(hub, "ana")


async def phase_of(core, kube, name: str) -> str:
    """The pod's phase, with ``:Unschedulable`` when the scheduler said so; ``absent``."""
    try:
        pod = await core.read_namespaced_pod(name, kube.namespace)
    except ApiException:
        return "absent"
    unschedulable = any(c.reason == "Unschedulable" for c in pod.status.conditions or [])
    return pod.status.phase + (":Unschedulable" if unschedulable else "")


async def is_phase(core, kube, name: str, wanted: str) -> bool:
    return await phase_of(core, kube, name) == wanted
