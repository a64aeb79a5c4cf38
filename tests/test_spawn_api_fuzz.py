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

Accepted spawns run a process that never answers HTTP, so they stay pending
(cheap) until the test stops them. The run is bounded by time, not only by
count: ``SOVEREIGN_FUZZ_HTTP_SECONDS`` (default 30) and
``SOVEREIGN_FUZZ_HTTP_EXAMPLES`` (default 10,000), and by the supply of fresh
users (``SOVEREIGN_FUZZ_HTTP_USERS`` per kind, default 80: an accepted spawn
spends its user). ``make fuzz`` reaches 10,000 in rounds of a fresh hub each.
The numbers reached are printed.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sovereign_hub.policy import Identity, entitlements, load_policy
from sovereign_hub.sandbox.hubprocess import Hub
from tests.attacks import spawn_bodies
from tests.conftest import ROOT, eventually
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

# Test-only window into the real hub's GPU ledger, served by the hub under test.
LEDGER_HANDLER = """
from tornado import web

class _GpuHolds(web.RequestHandler):
    def get(self):
        from sovereign_hub.spawner.quota import SHARED
        self.write({"gpus": SHARED.usage().gpus})

c.JupyterHub.extra_handlers = [(r"/test/gpu-holds", _GpuHolds)]
# Added to, not replaced: the governed sharing keeps its state in the Tornado settings.
c.JupyterHub.tornado_settings = {**c.JupyterHub.get("tornado_settings", {}), "slow_spawn_timeout": 1.5}
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
    # may still be refused: wait until every accepted server has a pod or is gone.
    async def settled():
        pods = (await core.list_namespaced_pod(kube.namespace)).items
        with_pod = {p.metadata.annotations["hub.jupyter.org/username"] for p in pods}
        for user in sorted(set(run.accepted) - with_pod):
            if not run.hub.api("GET", f"/users/{user}").json().get("servers"):
                del run.accepted[user]  # refused after all: it must leave nothing
        return set(run.accepted) <= with_pod

    await eventually(settled, timeout=60, interval=0.5)
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
