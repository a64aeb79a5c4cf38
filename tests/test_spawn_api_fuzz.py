"""Generated hostile spawn requests through a real JupyterHub, proxy and SovereignSpawner.

Kubernetes is emulated (the ``kube`` fixture). The bodies come from
:mod:`tests.attacks` — any JSON, near-miss names with unicode tricks, KubeSpawner
keys — sent by users of each kind (EU researcher, US analyst, both, none) as
``POST /users/{name}/server``, bare or wrapped in JupyterHub 6's
``{"user_options": …}``. Afterwards:

- no response is a 5xx;
- every pod in the namespace belongs to a request the hub accepted, and lies
  inside its owner's entitlement (profile, region, pinned image, GPUs);
- no claim exists for a user whose every request was refused;
- the hub's GPU ledger holds exactly the GPUs of the accepted spawns.

Before those checks every accepted spawn must settle (:func:`wait_settled`): have a
pod, have been refused after all, or wait in the fair GPU queue as the hub's REST API
shows it (the server's ``state.sovereign.queued``, read as ``sovhub gpu-queue list``
reads it); an accepted spawn in none of these states is lost, and fails the test.

Accepted spawns run a process that never answers HTTP, so they stay pending
(cheap) until the test stops them. The run is bounded by time, not only by
count: ``SOVEREIGN_FUZZ_HTTP_SECONDS`` (default 30) and
``SOVEREIGN_FUZZ_HTTP_EXAMPLES`` (default 10,000), and by the supply of fresh
users (``SOVEREIGN_FUZZ_HTTP_USERS`` per kind, default 80: an accepted spawn
spends its user). ``make fuzz`` reaches 10,000 in rounds of a fresh hub each.
The numbers reached are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sovereign_hub.policy import Identity, entitlements, load_policy
from sovereign_hub.sandbox.hubprocess import Hub
from sovereign_hub.spawner.fairqueue import Pool, Waiter
from sovereign_hub.spawner.queuecli import waiters_from_users
from tests.attacks import spawn_bodies
from tests.conftest import ROOT
from tests.hubs import sovereign_hub_config

POLICY_PATH = ROOT / "examples" / "policy.yaml"
POLICY = load_policy(POLICY_PATH).policy
VERSIONS = {v.version for c in POLICY.channels.values() for v in c.versions}
SECONDS = float(os.environ.get("SOVEREIGN_FUZZ_HTTP_SECONDS", "30"))
EXAMPLES = int(os.environ.get("SOVEREIGN_FUZZ_HTTP_EXAMPLES", "10000"))
KINDS = {
    "eu": ("eu-researchers",),
    "us": ("us-analysts",),
    "both": ("eu-researchers", "us-analysts"),
    "none": (),
}
USERS_PER_KIND = int(os.environ.get("SOVEREIGN_FUZZ_HTTP_USERS", "80"))
BATCH = 8  # requests sent at once, each by a different user
SETTLE_SECONDS = 60.0  # how long an accepted spawn may be neither podded, queued nor refused

# Test-only window into the real hub's GPU ledger, served by the hub under test.
LEDGER_HANDLER = """
from tornado import web

class _GpuHolds(web.RequestHandler):
    def get(self):
        from sovereign_hub.spawner.quota import SHARED
        self.write({"gpus": SHARED.usage().gpus})

c.JupyterHub.extra_handlers = [(r"/test/gpu-holds", _GpuHolds)]
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 1.5}  # wholesale: sharing must not mind
c.JupyterHub.concurrent_spawn_limit = 0
"""


@dataclass
class Run:
    hub: Hub
    fresh: dict[str, list[str]]
    accepted: dict[str, str] = field(default_factory=dict)  # user -> kind
    statuses: Counter[int] = field(default_factory=Counter)
    sent: int = 0
    started: float = field(default_factory=time.monotonic)


def create_users(hub: Hub) -> dict[str, list[str]]:
    fresh: dict[str, list[str]] = {}
    for kind, groups in KINDS.items():
        names = [f"{kind}{i:04d}" for i in range(USERS_PER_KIND)]
        assert hub.api("POST", "/users", json={"usernames": names}).ok
        for group in groups:
            response = hub.api("POST", f"/groups/{group}", json={"users": names})
            if response.status_code == 409:
                response = hub.api("POST", f"/groups/{group}/users", json={"users": names})
            assert response.ok, response.text
        fresh[kind] = names
    return fresh


@pytest.fixture
def run(kube, tmp_path):
    config = "\n".join(
        [
            *sovereign_hub_config(kube, POLICY_PATH),
            LEDGER_HANDLER,
        ]
    )
    hub = Hub(tmp_path / "hub", config, env={"KUBECONFIG": str(kube.kubeconfig)})
    try:
        yield Run(hub, create_users(hub))
    finally:
        hub.stop()


BODY = spawn_bodies(POLICY.profiles, POLICY.regions, VERSIONS)
WRAPPED = st.one_of(
    BODY,
    BODY,
    st.builds(lambda b: {"user_options": b}, BODY),
    st.builds(lambda b, n: {"display_name": n, "user_options": b}, BODY, st.text(max_size=8)),
)


def send(run: Run, user: str, body: object) -> tuple[str, int]:
    response = run.hub.api("POST", f"/users/{user}/server", json=body, timeout=60)
    assert response.status_code < 500, (user, body, response.status_code, response.text)
    if response.status_code not in (201, 202):
        assert response.status_code in (400, 403), (body, response.status_code, response.text)
        assert response.json()["message"], response.text
    return user, response.status_code


def send_batch(run: Run, pool: ThreadPoolExecutor, batch: list[tuple[str, object]]) -> None:
    """Send ``batch`` at once, each request by a different user who has no server yet."""
    taken: Counter[str] = Counter()
    jobs = []
    for kind, body in batch:
        user = run.fresh[kind][taken[kind]]
        taken[kind] += 1
        jobs.append((user, body, kind))
    for (user, _, kind), (_, status) in zip(
        jobs, pool.map(lambda job: send(run, job[0], job[1]), jobs), strict=True
    ):
        run.sent += 1
        run.statuses[status] += 1
        if status in (201, 202):
            # Accepted (or still deciding past slow_spawn_timeout): this user is spent.
            run.accepted[user] = kind
            run.fresh[kind].remove(user)


class OutOfBudget(Exception):
    """The time (or the supply of fresh users) is spent: stop generating."""


def fuzz(run: Run) -> None:
    pool = ThreadPoolExecutor(BATCH)

    @settings(
        max_examples=max(1, EXAMPLES // BATCH),
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.lists(st.tuples(st.sampled_from(sorted(KINDS)), WRAPPED), min_size=BATCH, max_size=BATCH)
    )
    def attack(batch: list[tuple[str, object]]) -> None:
        if SECONDS and time.monotonic() - run.started > SECONDS:
            raise OutOfBudget
        if min(len(users) for users in run.fresh.values()) < BATCH:
            raise OutOfBudget
        send_batch(run, pool, batch)

    run.started = time.monotonic()
    with pool, contextlib.suppress(OutOfBudget):
        attack()


@dataclass(frozen=True)
class Settling:
    """Where the accepted spawns stand, as the cluster and the hub's REST API show them."""

    with_pod: frozenset[str]
    queued: Mapping[str, Waiter]
    """Users whose pending server waits in the fair GPU queue (no pod, no GPU held)."""
    refused: frozenset[str]
    """Users with no server any more: answered 202, then refused."""
    lost: Mapping[str, object]
    """Users whose accepted server is none of the above, with its REST model."""


def settling(
    accepted: Iterable[str], with_pod: set[str], models: Mapping[str, Mapping[str, Any]]
) -> Settling:
    """Classify each accepted user from the pods' owners and their ``GET /users/{name}``
    models (``models`` needs only the users without a pod).

    A spawn counts as queued only as a client sees it: its server is pending a spawn and
    its state holds a place in the queue (the admin's view, ``admin:server_state``,
    parsed by the same code as ``sovhub gpu-queue list``).
    """
    queued: dict[str, Waiter] = {}
    refused: set[str] = set()
    lost: dict[str, object] = {}
    for user in sorted(set(accepted) - with_pod):
        model = models[user]
        servers = model.get("servers") or {}
        if not servers:
            refused.add(user)
            continue
        waiting = [
            w
            for w in waiters_from_users([model]).waiters()
            if w.user == user and (servers.get(w.server) or {}).get("pending") == "spawn"
        ]
        if waiting:
            queued[user] = waiting[0]
        else:
            lost[user] = servers
    return Settling(frozenset(with_pod & set(accepted)), queued, frozenset(refused), lost)


async def wait_settled(
    accepted: Iterable[str],
    pod_owners: Callable[[], Awaitable[set[str]]],
    user_model: Callable[[str], Mapping[str, Any]],
    timeout: float = SETTLE_SECONDS,
    interval: float = 0.5,
) -> Settling:
    """Wait until no accepted spawn is lost (see :func:`settling`); fail naming those that
    still are after ``timeout`` seconds, with their servers' REST models."""
    accepted = set(accepted)
    deadline = time.monotonic() + timeout
    while True:
        with_pod = await pod_owners()
        models = {user: user_model(user) for user in sorted(accepted - with_pod)}
        state = settling(accepted, with_pod, models)
        if not state.lost:
            return state
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{len(state.lost)} accepted spawn(s) have neither a pod, a place in the GPU "
                f"queue, nor been refused after {timeout:.0f} s: {dict(state.lost)!r}"
            )
        await asyncio.sleep(interval)


async def test_generated_spawn_requests_never_escape_the_entitlement_nor_leave_anything(
    run, kube, core
):
    fuzz(run)
    elapsed = time.monotonic() - run.started
    rate = run.sent / elapsed
    print(
        f"\nspawn API fuzz: {run.sent} requests in {elapsed:.1f} s ({rate:.0f}/s); "
        f"statuses {dict(sorted(run.statuses.items()))}; {len(run.accepted)} accepted"
    )
    assert run.sent >= min(EXAMPLES, 100), "the fuzz sent too few requests to mean anything"

    # A spawn answered 202 only because its decision took longer than slow_spawn_timeout
    # may still be refused, and a GPU spawn may wait in the fair queue with no pod.
    async def pod_owners() -> set[str]:
        pods = (await core.list_namespaced_pod(kube.namespace)).items
        return {p.metadata.annotations["hub.jupyter.org/username"] for p in pods}

    state = await wait_settled(
        run.accepted, pod_owners, lambda user: run.hub.api("GET", f"/users/{user}").json()
    )
    for user in state.refused:
        del run.accepted[user]  # refused after all: it must leave nothing
    print(
        f"settled: {len(state.with_pod)} with a pod, {len(state.queued)} queued for a GPU, "
        f"{len(state.refused)} refused after their 202"
    )
    for user, waiter in state.queued.items():
        # A place in the queue is a promise of a pod later: it must lie inside the entitlement.
        grant = entitlements(Identity(user, frozenset(KINDS[run.accepted[user]])), POLICY).get(
            waiter.profile
        )
        assert grant is not None, f"bypass: {user} waits for {waiter.profile}"
        assert waiter.pool.region in grant.regions, f"bypass: {user} waits in {waiter.pool.region}"
    pods = (await core.list_namespaced_pod(kube.namespace)).items
    claims = (await core.list_namespaced_persistent_volume_claim(kube.namespace)).items
    expected_gpus: dict[str, dict[str, int]] = {}
    owners = set()
    for pod in pods:
        user = pod.metadata.annotations["hub.jupyter.org/username"]
        owners.add(user)
        assert user in run.accepted, f"pod {pod.metadata.name} for a refused request"
        identity = Identity(user, frozenset(KINDS[run.accepted[user]]))
        labels = pod.metadata.labels
        grant = entitlements(identity, POLICY).get(labels["sovereign-hub.io/profile"])
        assert grant is not None, f"bypass: {user} runs {labels['sovereign-hub.io/profile']}"
        region = labels["sovereign-hub.io/region"]
        assert region in grant.regions, f"bypass: {user} runs in {region}"
        profile = POLICY.profiles[grant.profile]
        affinity = (
            pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
        )
        terms = [
            (e.key, tuple(e.values))
            for t in affinity.node_selector_terms
            for e in t.match_expressions
        ]
        wanted = (POLICY.scheduling.region_label, tuple(POLICY.regions[region].node_regions))
        assert wanted in terms, (user, terms)
        image = pod.spec.containers[0].image
        channel = POLICY.channels[profile.channel]
        assert image in {v.image for v in channel.versions if not v.revoked}, image
        limits = pod.spec.containers[0].resources.limits or {}
        if profile.gpu is not None:
            resource = POLICY.gpu_types[profile.gpu.type].resource
            assert limits.get(resource) == str(profile.gpu.count)
            # Only eu-researchers grants GPU profiles in the example policy.
            expected_gpus.setdefault("eu-researchers", {})[user] = profile.gpu.count
        else:
            assert not any("gpu" in name for name in limits), limits
    for claim in claims:
        assert any(claim.metadata.name.startswith(f"home-{u}-") for u in owners), (
            f"claim {claim.metadata.name} left by a refused request"
        )
    holds = requests.get(f"{run.hub.url}/hub/test/gpu-holds", timeout=10).json()["gpus"]
    held = {g: {u: n for u, n in users.items() if n} for g, users in holds.items()}
    assert {g: u for g, u in held.items() if u} == expected_gpus, (
        "GPU holds do not match the accepted spawns"
    )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda u: run.hub.api("DELETE", f"/users/{u}/server"), run.accepted))


# -- the settling check itself, on REST models as JupyterHub 6.1 answers them -------------
def _server(pending: str | None, queued: Waiter | None = None) -> dict[str, Any]:
    place = {"waiter": queued.to_state(), "clock": {}, "maxWait": 3600.0} if queued else None
    return {
        "name": "",
        "ready": False,
        "pending": pending,
        "progress_url": "/hub/api/users/x/server/progress",
        "state": {"sovereign": {"queued": place}},
    }


def _waiter(user: str) -> Waiter:
    return Waiter(user, "", Pool("a100", "eu"), "eu-researchers", 1, since=0.0, profile="gpu-a100")


MODELS = {
    "queued": {"name": "queued", "servers": {"": _server("spawn", _waiter("queued"))}},
    "lost": {"name": "lost", "servers": {"": _server("spawn")}},
    "refused": {"name": "refused", "servers": {}},
    # A place saved for a server no longer pending (a stale state) is not waiting.
    "stale": {"name": "stale", "servers": {"": _server(None, _waiter("stale"))}},
}


def test_settling_tells_a_queued_spawn_from_a_lost_one():
    state = settling(["podded", *MODELS], {"podded", "other"}, MODELS)
    assert state.with_pod == {"podded"}
    assert set(state.queued) == {"queued"}
    assert state.queued["queued"].profile == "gpu-a100"
    assert state.refused == {"refused"}
    assert set(state.lost) == {"lost", "stale"}


async def _owners() -> set[str]:
    return {"podded"}


async def test_the_settling_check_passes_on_a_queued_spawn_and_fails_on_a_lost_one():
    settled = await wait_settled(["podded", "queued", "refused"], _owners, MODELS.__getitem__, 0.2)
    assert set(settled.queued) == {"queued"}
    assert settled.refused == {"refused"}
    with pytest.raises(AssertionError, match=r"1 accepted spawn.*'lost'"):
        await wait_settled(["podded", "queued", "lost"], _owners, MODELS.__getitem__, 0.2, 0.05)
