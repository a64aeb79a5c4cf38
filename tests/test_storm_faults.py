"""Faults during a spawn storm: the Kubernetes API server restarted, the proxy killed.

A real hub and configurable-http-proxy with the Sovereign spawner and the
audit trail (SQLite sink, HMAC chain), on the emulated cluster: Kubernetes is
emulated, so an API server restart is :meth:`Cluster.restart_api_server` (the
state kept as etcd keeps it, the same port, every watch dropped). Each pod
runs a tiny HTTP server that answers with its user's name, so "reachable"
means the right pod answered through the proxy.

Sized for CI (16 spawns, the API server down 5 s); benchmarks/bench_storm.py runs
the same tests bigger through SOVEREIGN_STORM_SPAWNS, SOVEREIGN_STORM_API_OUTAGE
and SOVEREIGN_STORM_STORE_OUTAGE (seconds the audit store stays down at least).

Afterwards, for every fault: each spawn ended started (and reachable) or
stopped with a recorded reason, no pod or claim belongs to a spawn the hub
refused or forgot, the GPU ledger equals the GPU pods, the hub still sees the
cluster change (its reflectors resumed), and the audit trail has a terminal
record for every spawn request and verifies.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from sovereign_hub.audit.checkpoint import family_of
from sovereign_hub.audit.store import read
from sovereign_hub.audit.verify import verify
from sovereign_hub.policy.decision import LABEL_PREFIX
from sovereign_hub.sandbox.hubprocess import Hub
from sovereign_hub.sandbox.postgres import LocalPostgres
from tests.conftest import ROOT, TEST_NODES, require_postgres
from tests.hubs import sovereign_hub_config
from tests.test_spawn_api_fuzz import LEDGER_HANDLER
from tests.test_spawn_faults import no_orphans_and_exact_holds

SPAWNS = int(os.environ.get("SOVEREIGN_STORM_SPAWNS", "16"))
API_OUTAGE = float(os.environ.get("SOVEREIGN_STORM_API_OUTAGE", "5"))
STORE_OUTAGE = float(os.environ.get("SOVEREIGN_STORM_STORE_OUTAGE", "0"))
PER_NODE = 8  # cpu-small servers one CPU node of the test inventory holds
GPU_USERS = [f"gpu{i:02d}" for i in range(6)]  # quota 2: four are refused
# At CI's size: 8 EU servers exactly fill the EU CPU node, 2 US ones.
EU_USERS = [f"eu{i:02d}" for i in range((SPAWNS - len(GPU_USERS)) * 4 // 5)]
US_USERS = [f"us{i:02d}" for i in range(SPAWNS - len(GPU_USERS) - len(EU_USERS))]
USERS = GPU_USERS + EU_USERS + US_USERS
TERMINAL = {"server-started", "spawn-failed", "spawn-denied"}
# The pod's "notebook": answers every path with its user's name, on the port the hub expects.
POD_SERVER = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers()\n"
    "        self.wfile.write(os.environ['JUPYTERHUB_USER'].encode())\n"
    "    def log_message(self, *a): pass\n"
    "http.server.ThreadingHTTPServer(('0.0.0.0', 8888), H).serve_forever()\n"
)


def body_of(user: str) -> dict[str, str]:
    if user in GPU_USERS:
        return {"profile": "gpu-a100", "region": "eu"}
    return {"profile": "cpu-small", "region": "us" if user in US_USERS else "eu"}


def hub_config(kube, policy: Path, state: Path, store: str, **trail: object) -> str:
    # sh -c: whatever arguments the spawner appends become ignored positional parameters.
    cmd = ["sh", "-c", f'exec {sys.executable} -c "$POD_SERVER"', "pod"]
    spawner = sovereign_hub_config(
        kube,
        policy,
        cmd=cmd,
        environment={"POD_SERVER": POD_SERVER},
        start_timeout=max(120, 4 * SPAWNS),
        http_timeout=60,
        # Outages up to this long are ridden out (30 s, KubeSpawner's default, at CI's size).
        k8s_api_request_retry_timeout=max(30, round(2 * API_OUTAGE)),
    )
    sink = (
        {"type": "postgresql", "dsn": store}
        if store.startswith("postgresql:")
        else {"type": "sqlite", "path": store}
    )
    audit = {
        "spool_dir": str(state / "spool"),
        "sinks": [sink],
        "hmac_key_file": str(state / "audit-hmac-key"),
        "hub_instance": "storm",
        **trail,
    }
    return "\n".join(
        [
            *spawner,
            "c.JupyterHub.cleanup_servers = False",
            # JupyterHub's default (100) at CI's size; a bigger storm must not meet a 429.
            f"c.JupyterHub.concurrent_spawn_limit = {max(100, 2 * SPAWNS)}",
            *(f"c.AuditTrail.{k} = {v!r}" for k, v in audit.items()),
            LEDGER_HANDLER,
            "from sovereign_hub.hubconfig import attach_audit",
            "attach_audit(c)",
        ]
    )


@dataclass
class Storm:
    hub: Hub
    state: Path
    store: str

    def spawn_all(self) -> dict[str, int]:
        def spawn(user: str) -> int:
            try:
                return self.spawn(user)
            except requests.ConnectionError:
                return 0  # the proxy died under the request: the client saw no answer

        with ThreadPoolExecutor(len(USERS)) as pool:
            return dict(zip(USERS, pool.map(spawn, USERS), strict=True))

    def spawn(self, user: str) -> int:
        return self.hub.api(
            "POST", f"/users/{user}/server", json=body_of(user), timeout=120
        ).status_code

    def settle(self, timeout: float = max(150.0, 5.0 * SPAWNS)) -> dict[str, dict]:
        """Wait until no server is pending; return each user's default server (or {})."""
        deadline = time.monotonic() + timeout
        servers: dict[str, dict] = {}
        while time.monotonic() < deadline:
            try:
                response = self.hub.api("GET", "/users")
            except requests.ConnectionError:  # through a proxy that is not back yet
                response = None
            if response is None or not response.ok:  # or back, before the hub's route is
                time.sleep(0.5)
                continue
            models = response.json()
            servers = {
                m["name"]: m.get("servers", {}).get("", {}) for m in models if m["name"] in USERS
            }
            if not any(s.get("pending") for s in servers.values()):
                return servers
            time.sleep(0.5)
        pending = {u: s["pending"] for u, s in servers.items() if s.get("pending")}
        raise AssertionError(f"still pending after {timeout:.0f} s: {pending}")

    def reachable(self, user: str) -> bool:
        token = self.hub.token
        try:
            r = requests.get(
                f"{self.hub.url}/user/{user}/",
                headers={"Authorization": f"token {token}"},
                timeout=10,
                allow_redirects=False,
            )
        except requests.RequestException:
            return False
        return r.status_code == 200 and r.text == user

    def metric(self, name: str) -> float:
        """One of the trail's metrics on /hub/metrics, summed over its sinks."""
        text = self.hub.api("GET", "/../metrics").text
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(f"{name}{{") or line.startswith(f"{name} ")
        ]
        assert values, f"{name} is not on /hub/metrics"
        return sum(values)

    def records(self) -> list[dict]:
        return list(read(self.store))


@pytest.fixture
def kube(make_cluster, tmp_path):
    """The test inventory, with as many CPU nodes per region as the storm's CPU servers need
    (at CI's size, exactly tests/data/nodes.yaml)."""
    doc = yaml.safe_load(TEST_NODES.read_text())
    servers = {"eu-cpu-1": len(EU_USERS), "us-cpu-1": len(US_USERS)}
    nodes = []
    for node in doc["nodes"]:
        count = max(1, -(-servers.get(node["name"], 0) // PER_NODE))
        nodes += [{**node, "name": f"{node['name'][:-1]}{i + 1}"} for i in range(count)]
    inventory = tmp_path / "nodes.yaml"
    inventory.write_text(yaml.safe_dump({"nodes": nodes}, sort_keys=False))
    return make_cluster(inventory)


@pytest.fixture
def make_storm(kube, tmp_path) -> Iterator[Callable[..., Storm]]:
    """Start the storm's hub; ``store`` is a PostgreSQL URL, or empty for SQLite."""
    if not kube.emulated:
        pytest.skip("these faults restart the emulated API server; a real one is not ours")
    doc = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    doc["groups"]["eu-researchers"].update(gpuQuota=2, perUserGpuLimit=1)
    # Over-quota GPU spawns are refused at once rather than queued for an hour, so every
    # spawn of the storm reaches an end the test can see.
    doc["gpuQueue"] = {"enabled": False}
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False))
    state = tmp_path / "state"
    state.mkdir()
    (state / "audit-hmac-key").write_text(secrets.token_hex(32))
    hubs: list[Hub] = []

    def start(store: str = "", **trail: object) -> Storm:
        store = store or str(state / "audit.sqlite")
        config = hub_config(kube, policy, state, store, **trail)
        hub = Hub(tmp_path / "hub", config, env={"KUBECONFIG": str(kube.kubeconfig)})
        hubs.append(hub)
        assert hub.api("POST", "/users", json={"usernames": USERS}).ok
        for group in ("eu-researchers", "us-analysts"):
            assert hub.api("POST", f"/groups/{group}", json={"users": USERS}).ok
        return Storm(hub, state, store)

    try:
        yield start
    finally:
        for hub in hubs:
            hub.stop()


@pytest.fixture
def storm(make_storm) -> Storm:
    return make_storm()


async def assert_clean_outcome(storm: Storm, kube, core) -> None:
    """The invariants every fault must leave behind (the hub still running)."""
    hub = storm.hub
    servers = storm.settle()
    running = {u for u, s in servers.items() if s.get("ready")}
    assert not [u for u, s in servers.items() if s and not s.get("ready")], servers
    unreachable = [u for u in running if not storm.reachable(u)]
    assert not unreachable, f"running but not reachable through the proxy: {unreachable}"
    await no_orphans_and_exact_holds(hub, core, kube, USERS)
    # Home claims only for spawns the policy allowed (kept after a failure, as a home is):
    # none for a spawn the quota refused.
    claims = (await core.list_namespaced_persistent_volume_claim(kube.namespace)).items
    owners = {c.metadata.annotations[f"{LABEL_PREFIX}username"] for c in claims}
    failed = {r["data"]["subject"] for r in storm.records() if family_of(r) == "spawn-failed"}
    allowed = running | failed
    assert owners <= allowed, f"claims of refused spawns: {owners - allowed}"
    # The hub's reflectors resumed: a stop completes only once the pod's deletion is seen.
    some = sorted(running)[0]
    assert hub.api("DELETE", f"/users/{some}/server", timeout=60).status_code in (202, 204)
    hub.wait_for_server(some, ready=False, timeout=60)
    assert hub.api("POST", f"/users/{some}/server", json=body_of(some)).status_code in (201, 202)
    hub.wait_for_server(some, timeout=60)
    assert storm.reachable(some)


def assert_audit_complete(storm: Storm) -> list[dict]:
    """Every spawn request has its outcome in the trail; every failure says why; the chain
    verifies (called after the hub stopped, so its final checkpoint is written)."""
    records = storm.records()
    report = verify(records, (storm.state / "audit-hmac-key").read_text().encode())
    assert report.ok, report
    by_user: dict[str, list[str]] = {}
    for r in records:
        subject = r.get("data", {}).get("subject")
        if subject in USERS:
            by_user.setdefault(subject, []).append(family_of(r))
    for user in USERS:
        families = by_user.get(user, [])
        requested = families.count("spawn-requested")
        ended = sum(f in TERMINAL for f in families)
        # A refusal before the request is recorded (no entitlement) is a spawn-denied alone.
        assert ended >= requested, f"{user}: {families}"
    for r in records:
        if family_of(r) == "spawn-failed":
            detail = r["data"]["detail"]
            assert len(detail) > 10, f"a failure without a readable reason: {r['data']}"
    return records


async def test_an_emulated_api_server_restart_mid_storm_leaves_every_spawn_settled_and_audited(
    storm, kube, core
):
    """Found two defects (#21), both fixed: the emulated scheduler's task ended on the first
    API error of a scheduling cycle, so pods created afterwards stayed Pending and their
    spawns waited out start_timeout (9 of 12 up); and a quota refusal's poll waited for the
    API server past slow_spawn_timeout, so the client got a 500."""
    with ThreadPoolExecutor(1) as pool:
        spawning = pool.submit(storm.spawn_all)
        time.sleep(1.0)  # the POSTs are in flight, pods being created
        went_down = time.monotonic()
        kube.restart_api_server(down_for=API_OUTAGE)
        back_up = time.monotonic()
        statuses = spawning.result()
    assert all(code in (201, 202, 403) for code in statuses.values()), statuses
    servers = storm.settle()
    settled = time.monotonic()
    running = sum(bool(s.get("ready")) for s in servers.values())
    print(
        f"\nAPI server down {API_OUTAGE:.0f} s mid-storm ({SPAWNS} spawns): {running} running, "
        f"{list(statuses.values()).count(403)} refused by quota; every spawn settled "
        f"{settled - went_down:.1f} s after it went down ({settled - back_up:.1f} s after "
        "it was back)"
    )
    # Spawns in flight waited for the API server rather than failing: all the quota admits
    # (2 GPU servers, every CPU server) run.
    assert running == len(USERS) - len(GPU_USERS) + 2, servers
    await assert_clean_outcome(storm, kube, core)
    storm.hub.stop()
    assert_audit_complete(storm)


async def test_the_proxy_killed_mid_storm_is_restarted_with_every_route(storm, kube, core):
    """JupyterHub checks its configurable-http-proxy every check_running_interval (5 s):
    a dead proxy is started again and the hub restores every route from its database."""
    pid_file = storm.hub.workdir / "jupyterhub-proxy.pid"
    with ThreadPoolExecutor(1) as pool:
        spawning = pool.submit(storm.spawn_all)
        time.sleep(1.0)
        proxy_pid = int(pid_file.read_text())
        killed_at = time.monotonic()
        os.kill(proxy_pid, signal.SIGKILL)
        statuses = spawning.result()
    assert all(code in (0, 201, 202, 403) for code in statuses.values()), statuses
    servers = storm.settle()
    # A client whose request died with the proxy asks again, as a browser would.
    unanswered = [u for u, code in statuses.items() if code == 0 and not servers[u]]
    for user in unanswered:
        assert storm.spawn(user) in (201, 202, 403)
    servers = storm.settle()
    running = sorted(u for u, s in servers.items() if s.get("ready"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(storm.reachable(u) for u in running):
        time.sleep(0.5)
    recovered = time.monotonic() - killed_at
    assert int(pid_file.read_text()) != proxy_pid  # a new proxy, started by the hub
    print(
        f"\nproxy SIGKILLed mid-storm: {len(running)} servers running and reachable "
        f"{recovered:.1f} s after ({list(statuses.values()).count(0)} requests died with it, "
        f"{len(unanswered)} of those asked again)"
    )
    # Every spawn the quota admits runs: a server that started while the proxy was down
    # got its route when the hub restored them.
    assert len(running) == len(USERS) - len(GPU_USERS) + 2, servers
    await assert_clean_outcome(storm, kube, core)
    storm.hub.stop()
    assert_audit_complete(storm)


async def test_the_audit_store_down_mid_storm_blocks_no_spawn_and_loses_no_event(
    make_storm, kube, core
):
    """PostgreSQL (real) stopped as in a crash before the storm and kept down until it has
    settled. The configured policy (`on_spool_full = fail-closed`) refuses spawns only when
    the spool is full; it is not, so spawns go on, their events wait in the spool and are
    delivered within retry_max_seconds of the store's return, and the chain verifies."""
    require_postgres()
    with LocalPostgres() as pg:
        storm = make_storm(pg.url, retry_max_seconds=2.0)
        pg.stop(mode="immediate")
        down_at = time.monotonic()
        statuses = storm.spawn_all()
        assert all(code in (201, 202, 403) for code in statuses.values()), statuses
        servers = storm.settle()
        running = {u for u, s in servers.items() if s.get("ready")}
        assert len(running) == len(USERS) - len(GPU_USERS) + 2, servers
        held = storm.metric("sovereign_audit_undelivered_events")
        assert held > 0, "the store is down, yet nothing waits in the spool"
        time.sleep(max(0.0, STORE_OUTAGE - (time.monotonic() - down_at)))
        assert storm.metric("sovereign_audit_events_dropped_total") == 0
        outage = time.monotonic() - down_at
        pg.start()
        back_at = time.monotonic()
        deadline = back_at + 30
        while storm.metric("sovereign_audit_undelivered_events") and time.monotonic() < deadline:
            time.sleep(0.25)
        delivered_after = time.monotonic() - back_at
        assert storm.metric("sovereign_audit_undelivered_events") == 0
        print(
            f"\naudit store down {outage:.1f} s mid-storm ({SPAWNS} spawns): "
            f"{len(running)} servers started, "
            f"{held:.0f} events held in the spool, delivered {delivered_after:.1f} s after "
            "the store returned"
        )
        await assert_clean_outcome(storm, kube, core)
        storm.hub.stop()
        assert_audit_complete(storm)
        key = (storm.state / "audit-hmac-key").read_text().encode()
        report = verify(storm.records(), key)
        assert report.proven, report.caveats
