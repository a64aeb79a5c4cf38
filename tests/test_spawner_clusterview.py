"""The GPU queue's view of every cluster: nodes listed in each, pods from each reflector, node
names kept apart. The API servers are emulated ones (no real API server runs here)."""

from __future__ import annotations

import logging
import re
import time
import types

import pytest
import yaml
from aiohttp import web
from kubernetes_asyncio import config
from kubernetes_asyncio.client import CoreV1Api

from sovereign_hub.policy import parse_policy
from sovereign_hub.sandbox.kube.apiserver import ApiServer
from sovereign_hub.sandbox.kube.cluster import write_kubeconfig
from sovereign_hub.sandbox.kube.store import Store
from sovereign_hub.spawner.capacity import Need, coming_gpus, free_gpus
from sovereign_hub.spawner.clusterview import ClusterView, clusters_of, pods_everywhere
from tests.conftest import ROOT

REGION = "topology.kubernetes.io/region"
PRODUCT = "nvidia.com/gpu.product"


def gpu_node(name: str, region: str, gpus: int) -> dict:
    return {
        "metadata": {"name": name, "labels": {REGION: region, PRODUCT: "NVIDIA-A100"}},
        "status": {
            "allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "8", "memory": "32Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


LABELS = {"region_label": REGION, "product_label": PRODUCT,
          "tolerated_taints": frozenset({"nvidia.com/gpu"})}  # fmt: skip


def free_of(nodes: list, pods: list) -> dict:
    """Free A100s by node name, as the queue counts them."""
    return {n.name: n.free.get("nvidia.com/gpu") for n in free_gpus(nodes, pods, **LABELS)}


def pod_on(node: str, gpus: int) -> dict:
    return {
        "metadata": {"name": f"jupyter-{node}", "namespace": "hub"},
        "spec": {"nodeName": node,
                 "containers": [{"resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}]},
        "status": {"phase": "Running"},
    }  # fmt: skip


class Clusters(dict):
    """Kubeconfig paths by cluster name, and the emulated API servers behind them."""

    def __init__(self, runners: dict) -> None:
        super().__init__()
        self.runners = runners


@pytest.fixture
async def two_clusters(tmp_path):
    """Two emulated API servers, each with a GPU node named ``gpu-1`` (in its own region)."""
    runners: dict = {}
    kubeconfigs = Clusters(runners)
    try:
        for name, region, gpus in (("eu-fra", "eu-central-1", 4), ("us-iad", "us-east-1", 2)):
            runner = web.AppRunner(ApiServer(Store(history=100), token="t").app())
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            runners[name] = runner
            url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
            path = write_kubeconfig(tmp_path / name, url, "t", "hub")
            kubeconfigs[name] = path
            client = await config.new_client_from_config(config_file=str(path))
            node = gpu_node("gpu-1", region, gpus)
            await CoreV1Api(client).create_node({"metadata": node["metadata"]})
            await CoreV1Api(client).patch_node_status(
                "gpu-1", {"status": node["status"]},
                _content_type="application/merge-patch+json",
            )  # fmt: skip
            placeholder = {
                "metadata": {"name": "placeholder-0",
                             "labels": {"app.kubernetes.io/component": "user-placeholder"}},
                "spec": {"nodeName": "gpu-1", "containers": [{
                    "name": "pause", "image": "registry.k8s.io/pause@sha256:" + "e" * 64,
                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
            }  # fmt: skip
            await CoreV1Api(client).create_namespace({"metadata": {"name": "hub"}})
            await CoreV1Api(client).create_namespaced_pod("hub", placeholder)
            await client.close()
        yield kubeconfigs
    finally:
        for runner in runners.values():
            await runner.cleanup()


def policy_with(kubeconfigs: dict) -> object:
    doc = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    doc["regions"]["eu"]["cluster"] = {"name": "eu-fra", "kubeconfig": str(kubeconfigs["eu-fra"])}
    doc["regions"]["us"]["cluster"] = {"name": "us-iad", "kubeconfig": str(kubeconfigs["us-iad"])}
    return parse_policy(yaml.safe_dump(doc)).policy


async def list_nodes_everywhere(policy, secrets_dir: str) -> list[dict]:
    view = ClusterView()
    view.follow(policy, secrets_dir, "hub")
    return await view.list_nodes()


async def test_the_nodes_of_every_cluster_are_listed_with_names_kept_apart(two_clusters):
    policy = policy_with(two_clusters)
    assert set(clusters_of(policy)) == {"eu-fra", "us-iad"}
    nodes = await list_nodes_everywhere(policy, "/nowhere")
    assert sorted(n["metadata"]["name"] for n in nodes) == ["eu-fra/gpu-1", "us-iad/gpu-1"]
    # Pods bound to the same node name in the two clusters are charged to their own node.
    reflectors = {
        ("pods", "hub", "eu-fra"): types.SimpleNamespace(pods={"hub/a": pod_on("gpu-1", 3)}),
        ("pods", "hub", "us-iad"): types.SimpleNamespace(pods={"hub/b": pod_on("gpu-1", 2)}),
        ("events", "hub", "us-iad"): types.SimpleNamespace(pods={}),
    }
    pods = pods_everywhere(reflectors)
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["eu-fra/gpu-1", "us-iad/gpu-1"]
    assert reflectors[("pods", "hub", "eu-fra")].pods["hub/a"]["spec"]["nodeName"] == "gpu-1"
    assert free_of(nodes, pods) == {"eu-fra/gpu-1": 1, "us-iad/gpu-1": 0}


async def test_a_cluster_never_listed_is_left_out_and_logged(two_clusters, tmp_path, caplog):
    down = write_kubeconfig(tmp_path / "down", "http://127.0.0.1:9", "t", "hub")
    policy = policy_with({**two_clusters, "us-iad": down})
    with caplog.at_level(logging.WARNING):
        nodes = await list_nodes_everywhere(policy, "/nowhere")
    assert [n["metadata"]["name"] for n in nodes] == ["eu-fra/gpu-1"]
    assert "cannot list the nodes of cluster us-iad" in caplog.text


async def test_a_cluster_that_stops_answering_keeps_its_last_view_until_it_is_too_old(
    two_clusters, caplog
):
    """us-iad's API server goes away after one good listing: its node and placeholder stay
    in the view (not freed, not hidden), one warning says so, and once the view is older
    than ``max_age`` the outage names the cluster, so the queue keeps its spawns waiting."""
    view = ClusterView(max_age=3600)
    view.follow(policy_with(two_clusters), "/nowhere", "hub")
    first = await view.list_nodes()
    await two_clusters.runners.pop("us-iad").cleanup()
    with caplog.at_level(logging.DEBUG, logger="sovereign_hub.spawner.clusterview"):
        for _ in range(3):
            assert await view.list_nodes() == first
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "cannot list the nodes of cluster us-iad" in warnings[0].getMessage()
    assert "keeping its view" in warnings[0].getMessage()
    assert "us-iad/gpu-1" in [p["spec"]["nodeName"] for p in view.placeholders()]
    assert view.outage("us-iad") is None  # younger than max_age: still admitted by
    view.max_age = 0
    assert view.outage("eu-fra") is None
    assert re.fullmatch(
        r"the hub cannot reach cluster us-iad since \d\d:\d\d UTC to see its free GPUs",
        view.outage("us-iad") or "",
    )


async def test_placeholders_are_listed_in_every_cluster_bound_to_their_own_node(two_clusters):
    """KubeSpawner's pod reflector never shows placeholders (it selects user servers): the
    view lists them by their label in each cluster, with the nodes."""
    view = ClusterView()
    view.follow(policy_with(two_clusters), "/nowhere", "hub")
    nodes = await view.list_nodes()
    held = view.placeholders()
    assert sorted(p["spec"]["nodeName"] for p in held) == ["eu-fra/gpu-1", "us-iad/gpu-1"]
    assert free_of(nodes, held) == {"eu-fra/gpu-1": 3, "us-iad/gpu-1": 1}


async def test_a_new_node_of_a_cluster_counts_as_starting_until_it_is_ready(two_clusters):
    """The emulated API server taints every new Node node.kubernetes.io/not-ready, as
    Kubernetes' TaintNodesByCondition does: the view shows it, free_gpus leaves it out and
    coming_gpus counts it, Ready in about the node start time."""
    client = await config.new_client_from_config(config_file=str(two_clusters["eu-fra"]))
    try:
        node = gpu_node("gpu-2", "eu-central-1", 4)
        node["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
        await CoreV1Api(client).create_node({"metadata": node["metadata"]})
        await CoreV1Api(client).patch_node_status(
            "gpu-2", {"status": node["status"]}, _content_type="application/merge-patch+json"
        )
    finally:
        await client.close()
    view = ClusterView()
    view.follow(policy_with(two_clusters), "/nowhere", "hub")
    nodes = await view.list_nodes()
    (new,) = [n for n in nodes if n["metadata"]["name"] == "eu-fra/gpu-2"]
    assert "node.kubernetes.io/not-ready" in [t["key"] for t in new["spec"]["taints"]]
    assert "eu-fra/gpu-2" not in free_of(nodes, [])
    need = Need("nvidia.com/gpu", 1, ("eu-central-1",), "NVIDIA-A100")
    ((gpus, ready_in),) = coming_gpus(nodes, need, start_seconds=300, now=time.time(), **LABELS)
    assert gpus == 4
    assert 200 < ready_in <= 300
