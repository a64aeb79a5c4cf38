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
import contextlib
import inspect
import os
import sys
import threading
import uuid
from collections import ChainMap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from types import CodeType, FunctionType
from typing import Any, NoReturn

import pytest
from hypothesis import settings
from kubernetes_asyncio import client, config

from sovereign_hub.sandbox.kube.cluster import Cluster, write_kubeconfig
from sovereign_hub.sandbox.kube.inventory import load_inventory
from sovereign_hub.sandbox.oidc import OidcProvider
from sovereign_hub.sandbox.postgres import LocalPostgres, PostgresUnavailable

ROOT = Path(__file__).resolve().parent.parent
TEST_NODES = Path(__file__).parent / "data" / "nodes.yaml"
_TESTS = str(Path(__file__).parent)


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


# Hypothesis sizes. The full lane (`make suite`) runs Hypothesis' default profile (100
# examples) and each test's explicit `examples(n)` as written. The fast lane (`make unit`)
# selects `--hypothesis-profile=fast`: a tenth of each. (Registered at import, before the
# Hypothesis plugin loads the profile; tests import this module a second time as
# `tests.conftest`, so nothing here may load a profile.)
_FULL_EXAMPLES = 100
settings.register_profile("fast", max_examples=_FULL_EXAMPLES // 10, deadline=None)


def examples(full: int) -> int:
    """``full`` examples in the full lane, scaled down with the fast lane's profile (at least 5)."""
    return max(5, full * settings.default.max_examples // _FULL_EXAMPLES)


# The fast lane (`make unit`) runs what starts no process, browser, Helm or checkov, nor a
# server of its own (an emulated API server, a recording receiver): `-m "not integration"`.
# A test is integration when
# - its body, a fixture it uses, or a function of tests/ they call names something that
#   starts a process or server (_process_starters: subprocess, multiprocessing, the
#   sandbox's components and API server), found in their code at collection (_uses_processes);
# - it asks for one of _PROCESS_FIXTURES, or sits in one of _PROCESS_MODULES (modules that
#   drive a browser, an in-process API server or receiver throughout);
# - or it is marked itself.
# A test that is none of these yet starts a process fails (_forbid_processes), in either
# lane, so a test the rules miss is caught instead of slowing the fast one.
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


def _process_starters() -> tuple[object, ...]:
    """What starts a process or a server when a test calls it: the standard library's ways
    and the sandbox's components (each runs processes, or an emulated API server)."""
    import multiprocessing
    import subprocess

    from sovereign_hub.sandbox.gatewayprocess import Gateway
    from sovereign_hub.sandbox.hubprocess import Hub
    from sovereign_hub.sandbox.kube.apiserver import ApiServer
    from sovereign_hub.sandbox.kube.podnet import PodNetworking
    from sovereign_hub.sandbox.loadtest.driver import run_apart
    from sovereign_hub.sandbox.loadtest.environment import LoadEnvironment
    from sovereign_hub.sandbox.podnet import PodNetwork

    return (subprocess, multiprocessing, Cluster, OidcProvider, LocalPostgres, Hub, Gateway,
            PodNetwork, PodNetworking, LoadEnvironment, run_apart, ApiServer)  # fmt: skip


# Called as attributes (``asyncio.create_subprocess_exec``, ``os.fork``…), so found by name.
_STARTER_NAMES = frozenset({"create_subprocess_exec", "create_subprocess_shell", "Popen", "fork"})


def _starts_processes(code: CodeType, names: Mapping[str, Any], starters: tuple[object, ...],
                      seen: set[CodeType]) -> bool:  # fmt: skip
    """Whether ``code``, or a function of the tests it calls or defines, names a starter."""
    if code in seen:
        return False
    seen.add(code)
    # A name imported inside the function (``from tests.x import run``) is found in its module.
    imported = [vars(sys.modules[n]) for n in code.co_names if "." in n and n in sys.modules]
    names = ChainMap(names, *imported) if imported else names
    for name in code.co_names:
        if name in _STARTER_NAMES:
            return True
        used = names.get(name)
        if used is None:
            continue
        if any(used is starter for starter in starters):
            return True
        helpers = vars(used).values() if isinstance(used, type) else (used,)
        for helper in helpers:
            helper = inspect.unwrap(helper) if callable(helper) else helper
            if (
                isinstance(helper, FunctionType)
                and helper.__code__.co_filename.startswith(_TESTS)
                and _starts_processes(helper.__code__, helper.__globals__, starters, seen)
            ):
                return True
    return any(
        isinstance(const, CodeType) and _starts_processes(const, names, starters, seen)
        for const in code.co_consts
    )


def _uses_processes(item: pytest.Item, starters: tuple[object, ...]) -> bool:
    """Whether the test's body, a fixture it uses or a helper of the tests they call names
    something that starts a process."""
    test = getattr(item, "function", None)
    test = getattr(getattr(test, "hypothesis", None), "inner_test", test)
    functions = [test] if test is not None else []
    fixtureinfo = getattr(item, "_fixtureinfo", None)
    for definitions in getattr(fixtureinfo, "name2fixturedefs", {}).values():
        functions.extend(definition.func for definition in definitions)
    seen: set[CodeType] = set()
    for function in functions:
        function = inspect.unwrap(function)
        if isinstance(function, FunctionType) and _starts_processes(
            function.__code__, function.__globals__, starters, seen
        ):
            return True
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    starters = _process_starters()
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        fixtures = set(getattr(item, "fixturenames", ()))
        if (
            module in _PROCESS_MODULES
            or fixtures & _PROCESS_FIXTURES
            or _uses_processes(item, starters)
        ):
            item.add_marker(pytest.mark.integration)


# Audit events (docs.python.org/3/library/audit_events.html) raised when a process starts.
_PROCESS_EVENTS = frozenset(
    [
        "subprocess.Popen",
        "os.system",
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.spawn",
        "os.exec",
    ]
)
_unit_test: list[str] = []  # the node id of the running test when it is not integration
_started: list[str] = []  # what it tried to start


# Libraries probe the system with these on first import (ctypes.util.find_library runs
# ldconfig, gcc, objdump; platform runs uname): not a component the test starts.
_LIBRARY_PROBES = frozenset({"ldconfig", "gcc", "cc", "ld", "objdump", "uname"})


def _forbid_processes(event: str, args: tuple[Any, ...]) -> None:
    # The test's own thread only: a thread an earlier integration test left running (a
    # local PostgreSQL's `runuser`, say) is not this test's doing, and raising there would
    # break that thread's work.
    if (
        _unit_test
        and event in _PROCESS_EVENTS
        and threading.current_thread() is threading.main_thread()
    ):
        program = os.fsdecode(args[0]) if args and isinstance(args[0], str | bytes) else ""
        if os.path.basename(program) in _LIBRARY_PROBES:
            return
        what = f"{event} {program}"
        _started.append(what)
        raise RuntimeError(
            f"{_unit_test[0]} starts a process ({what}) but is not marked integration: "
            "mark it (tests/conftest.py says how) or leave the process out"
        )


def pytest_configure(config: pytest.Config) -> None:
    # Here, not at import: only pytest's own import of this module runs its hooks.
    sys.addaudithook(_forbid_processes)


@contextlib.contextmanager
def _guarded(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker("integration") is None:
        _unit_test[:] = [item.nodeid]
    try:
        yield
    finally:
        _unit_test.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    """Forbid processes while a test that is not integration sets up and runs. Not while it
    tears down: the last test's teardown also finalizes the session's fixtures (stopping a
    local PostgreSQL an integration test started, say)."""
    with _guarded(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Fail a test that started a process even where it caught the refusal."""
    _started.clear()
    with _guarded(item):
        result = yield
    if _started:
        pytest.fail(f"started a process but is not marked integration: {_started[0]}")
    return result
