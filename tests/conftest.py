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
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from kubernetes_asyncio import client, config

from sovereign_hub.sandbox.kube.cluster import Cluster, write_kubeconfig
from sovereign_hub.sandbox.kube.inventory import load_inventory
from sovereign_hub.sandbox.oidc import OidcProvider
from sovereign_hub.sandbox.postgres import LocalPostgres, PostgresUnavailable

ROOT = Path(__file__).resolve().parent.parent
TEST_NODES = Path(__file__).parent / "data" / "nodes.yaml"


@pytest.fixture(scope="session")
def example_policy_path() -> Path:
    return ROOT / "examples" / "policy.yaml"


@pytest.fixture
def offline_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig naming no reachable server, for building spawners without a cluster.

    KubeSpawner loads Kubernetes config when constructed, even in ``_mock`` mode;
    kubernetes_asyncio reads $KUBECONFIG only at import, so patch its default.
    """
    path = write_kubeconfig(tmp_path / "offline-kubeconfig", "http://127.0.0.1:9", "unused", "hub")
    monkeypatch.setattr(
        "kubernetes_asyncio.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", str(path)
    )
    return path


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[[Path], Cluster]]:
    """Start clusters from an inventory file; all are stopped after the test.

    Emulated unless SOVEREIGN_TEST_KUBECONFIG names an API server; with
    SOVEREIGN_TEST_NODES=real the inventory is ignored and the cluster's own
    nodes do the work.
    """
    started: list[Cluster] = []
    kubeconfig = os.environ.get("SOVEREIGN_TEST_KUBECONFIG")

    def start(inventory: Path) -> Cluster:
        cluster = Cluster(
            load_inventory(inventory),
            tmp_path / f"kube-{len(started)}",
            kubeconfig_path=Path(kubeconfig) if kubeconfig else None,
            real_nodes=os.environ.get("SOVEREIGN_TEST_NODES") == "real",
        )
        started.append(cluster.start())
        return cluster

    try:
        yield start
    finally:
        for cluster in reversed(started):
            cluster.stop()


@pytest.fixture
def kube(make_cluster: Callable[[Path], Cluster]) -> Cluster:
    """A fresh cluster for one test, with the two-region inventory in tests/data/nodes.yaml."""
    return make_cluster(TEST_NODES)


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


def missing(what: str, make: str, how: str | None = None) -> NoReturn:
    """Skip a test whose real component is not installed, saying how to get it; in CI, where
    `make test` installs every one, fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide {what} (`{make}`)")
    pytest.skip(f"needs {what}: {how or f'run `{make}`'}")


def require_tool(path: Path, make_target: str) -> Path:
    """A binary or environment `make <make_target>` puts in .tools/ (Helm, kubectl, checkov…)."""
    if not path.exists():
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        missing(str(shown), f"make {make_target}")
    return path


def require_postgres() -> None:
    """Skip, saying why, where PostgreSQL's server is missing; in CI its absence is a failure."""
    try:
        from sovereign_hub.sandbox.postgres import server_bin

        server_bin()
    except PostgresUnavailable as exc:
        missing(f"a real PostgreSQL server ({exc})", "make system")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """One real PostgreSQL 15 server on 127.0.0.1 for the session (Debian's binaries)."""
    require_postgres()
    with LocalPostgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres_server: LocalPostgres) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")


ANA = {"sub": "ana", "preferred_username": "ana", "groups": ["eu-researchers"], "country": "DE"}


@pytest.fixture
def oidc_ana(tmp_path: Path) -> Iterator[OidcProvider]:
    """A real OIDC provider process whose one user is ana (eu-researchers, country DE)."""
    provider = OidcProvider([ANA], tmp_path / "oidc.log")
    yield provider
    provider.stop()


def require_program(name: str, fallback: str, package: str) -> str:
    """The path of a Debian program the test starts; skip (saying why) or, in CI, fail."""
    import shutil

    path = shutil.which(name) or fallback
    if not Path(path).exists():
        missing(f"Debian's {package}", "make system", f"apt-get install {package}")
    return path


# The fast lane (`make unit`) runs what needs no real process, browser, Helm or
# checkov: `-m "not integration"`. A test is integration when it asks for a
# fixture that starts a real component, or sits in a module that drives one
# directly; new tests of that kind are caught by the fixture rule.
_PROCESS_FIXTURES = frozenset(
    {
        "make_cluster",
        "kube",
        "core",
        "postgres_server",
        "pg_url",
        "oidc_ana",
        "provider",
        "hub",
        "start_hub",
        "registry",
        "plain_install",
    }
)
_PROCESS_MODULES = frozenset(
    {
        "test_browser",
        "test_helm_chart",
        "test_images",
        "test_sandbox",
        "test_real_api_mode",
        "test_kubespawner_fidelity",
        "test_kube_apiserver",
        "test_kube_cluster",
        "test_kube_concurrency",
        "test_kube_scheduling",
        "test_audit_shipprocess",
        "test_audit_postgres",
        "test_audit_hub",
        "test_audit_sinks",
        "test_audit_viewer",
        "test_spawner_hub",
        "test_entitlement_loss",
        "test_authenticator_hub",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        fixtures = set(getattr(item, "fixturenames", ()))
        if module in _PROCESS_MODULES or fixtures & _PROCESS_FIXTURES:
            item.add_marker(pytest.mark.integration)
