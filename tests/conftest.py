"""Shared fixtures.

Every integration test reaches Kubernetes through the ``kube`` fixture: an
emulated cluster by default (API server, scheduler and process kubelet on
127.0.0.1), or the API server named by ``SOVEREIGN_TEST_KUBECONFIG`` (a fresh
namespace per test, the local scheduler and kubelet attached to it), with
``SOVEREIGN_TEST_NODES=real`` leaving scheduling and running to the
cluster's own nodes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.sandbox.kube.inventory import load_inventory

ROOT = Path(__file__).resolve().parent.parent
TEST_NODES = Path(__file__).parent / "data" / "nodes.yaml"


@pytest.fixture(scope="session")
def example_policy_path() -> Path:
    return ROOT / "examples" / "policy.yaml"


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh cluster for one test (emulated unless SOVEREIGN_TEST_KUBECONFIG is set)."""
    kubeconfig = os.environ.get("SOVEREIGN_TEST_KUBECONFIG")
    cluster = Cluster(
        load_inventory(TEST_NODES),
        tmp_path / "kube",
        kubeconfig_path=Path(kubeconfig) if kubeconfig else None,
        real_nodes=os.environ.get("SOVEREIGN_TEST_NODES") == "real",
    )
    with cluster:
        yield cluster


@pytest.fixture
async def core(kube: Cluster) -> AsyncIterator[client.CoreV1Api]:
    """A CoreV1Api client on the test's own event loop, authenticated by the kubeconfig."""
    api = await config.new_client_from_config(config_file=str(kube.kubeconfig))
    try:
        yield client.CoreV1Api(api)
    finally:
        await api.close()


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 15.0, interval: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")
