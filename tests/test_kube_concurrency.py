"""Many pods at once: every one scheduled or Pending for the right reason, no watch event lost.

Emulated Kubernetes (or SOVEREIGN_TEST_KUBECONFIG); the 200-pod timing is in
benchmarks/bench_kube.py.
"""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client, config

from sovereign_hub.sandbox.kube.burst import burst
from tests.conftest import TEST_NODES

BURST_NODES = TEST_NODES.with_name("burst-nodes.yaml")


@pytest.fixture
def small_cluster(make_cluster):
    return make_cluster(BURST_NODES)


async def test_sixty_concurrent_pods_fill_capacity_and_the_rest_pend(small_cluster):
    api = await config.new_client_from_config(config_file=str(small_cluster.kubeconfig))
    try:
        core = client.CoreV1Api(api)
        result = await burst(
            core, small_cluster.namespace, 60, scheduler_name=small_cluster.scheduler_name
        )
        assert (result.running, result.pending) == (45, 15)
        assert result.watched_pods == 60
        assert result.watch_agrees
        events = await core.list_namespaced_event(
            small_cluster.namespace, field_selector="reason=FailedScheduling"
        )
        pending = {e.involved_object.name for e in events.items}
        assert len(pending) == 15
        assert all("3 Too many pods" in e.message for e in events.items)
    finally:
        await api.close()
