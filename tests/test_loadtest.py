"""The load generator as a CI test of its harness: a small Monday morning, zero failures.

Real hub, proxy, spawner, authenticator, OIDC provider and audit trail; the
Kubernetes API server is the project's emulator, and pods are light
single-user servers in the kubelet's process (sandbox/kube/lightpod.py), not
JupyterLab: this measures the hub's path, not a notebook's start-up.
"""

from __future__ import annotations

import random

import pytest
import requests

from sovereign_hub.policy import load_policy
from sovereign_hub.sandbox.loadtest import (
    LoadEnvironment,
    LoadPlan,
    arrival_times,
    choices,
    population,
    run,
    run_apart,
)
from sovereign_hub.sandbox.oidc import login_via_provider
from tests.conftest import ROOT

POLICY = load_policy(ROOT / "examples" / "policy.yaml").policy


def test_users_draw_only_what_their_group_is_entitled_to():
    cpu = choices(POLICY)
    assert {(c.group, c.profile, c.region) for c in cpu} == {
        ("eu-researchers", "cpu-small", "eu"),
        ("us-analysts", "cpu-small", "us"),
    }
    assert {c.profile for c in choices(POLICY, gpu=True)} >= {"gpu-a100", "gpu-slice"}
    users = population(LoadPlan(users=50, seed=3), POLICY)
    assert len({u.name for u in users}) == 50
    assert all(u.choice in cpu for u in users)


def test_a_share_of_users_draws_gpu_profiles_and_the_rest_draw_as_before():
    cpu_only = population(LoadPlan(users=400, seed=3), POLICY)
    mixed = population(LoadPlan(users=400, seed=3, gpu_share=0.25), POLICY)
    gpu = [u for u in mixed if POLICY.profiles[u.choice.profile].gpu is not None]
    assert 60 <= len(gpu) <= 140  # a quarter of 400, give or take the draw
    assert {u.choice.group for u in gpu} == {"eu-researchers"}  # the only group entitled
    assert {u.choice.profile for u in gpu} == {"gpu-a100", "gpu-slice"}
    # A share of 0 keeps the draws every CPU-only run made: one choice per user, in order,
    # from the seed (results stay comparable with runs before GPU users existed).
    rng = random.Random(3)  # noqa: S311 (the plan's reproducible draw)
    assert [u.choice for u in cpu_only] == [rng.choice(choices(POLICY)) for _ in range(400)]
    with pytest.raises(ValueError, match=r"gpu_share must be between 0 and 1, not 1\.5"):
        LoadPlan(gpu_share=1.5)


@pytest.mark.parametrize(
    ("plan", "times"),
    [
        (LoadPlan(users=3, arrival="burst"), [0.0, 0.0, 0.0]),
        (LoadPlan(users=5, arrival="ramp", ramp_seconds=8), [0.0, 2.0, 4.0, 6.0, 8.0]),
        (LoadPlan(users=1, arrival="ramp", ramp_seconds=8), [0.0]),
    ],
)
def test_arrivals_come_as_a_burst_or_an_even_ramp(plan, times):
    assert arrival_times(plan) == times


def test_users_run_apart_in_a_process_of_their_own_and_report_back():
    """The benchmark's driver: plan, users and every result cross the process boundary.
    Nothing listens on port 1, so each user ends with a connection error, reported."""
    plan = LoadPlan(users=3, concurrency=3, arrival="burst", deadline_seconds=60)
    users = population(plan, POLICY)
    report = run_apart("http://127.0.0.1:1", users, plan)
    assert report.plan == plan
    assert report.unfinished == 0
    assert sorted(r.name for r in report.results) == sorted(u.name for u in users)
    assert {r.outcome for r in report.results} == {"error"}
    assert all("ConnectionError" in r.detail for r in report.results)


def test_spawning_together_needs_room_for_every_spawning_user():
    with pytest.raises(ValueError, match="spawn_together needs concurrency >= spawners"):
        LoadPlan(users=10, concurrency=5, spawn_together=True)
    # Users who only log in need no room: they leave their thread once logged in.
    assert LoadPlan(users=10, concurrency=5, spawners=5, spawn_together=True).spawning == 5
    with pytest.raises(ValueError, match=r"spawners must be between 1 and users \(10\), not 11"):
        LoadPlan(users=10, spawners=11)
    with pytest.raises(ValueError, match="not 0"):
        LoadPlan(users=10, spawners=0)


@pytest.mark.parametrize(("users", "spawners"), [(5000, 1000), (10, 3), (7, 7), (7, 1), (3, 2)])
def test_spawning_users_are_spread_over_the_arrivals_and_the_last_one_spawns(users, spawners):
    """5,000 logged in, 1,000 spawning: every fifth arrival spawns. The last arrival always
    does, so the spawners are spread over the whole ramp."""
    people = population(LoadPlan(users=users, spawners=spawners), POLICY)
    flags = [u.spawns for u in people]
    assert sum(flags) == spawners
    assert flags[-1]
    gaps = [i for i, f in enumerate(flags) if f]
    # Even: no two spawning arrivals further apart than one run of users / spawners (rounded up).
    assert all(b - a <= -(-users // spawners) for a, b in zip([-1, *gaps], gaps, strict=False))
    assert all(u.spawns for u in population(LoadPlan(users=users), POLICY))


def test_spawning_users_wait_for_everyone_to_log_in_and_the_others_do_not():
    """The spawn-together countdown: a user who only logs in counts down and goes on; a
    spawning user waits until every user, spawning or not, has logged in (or failed to)."""
    import threading

    from sovereign_hub.sandbox.loadtest.user import Arrivals

    arrivals = Arrivals(3)
    arrivals.arrived()  # a spawner: it would now wait
    assert not arrivals.wait(0.01)
    arrivals.arrived()  # a user who only logs in does not wait
    released = threading.Event()
    waiter = threading.Thread(target=lambda: arrivals.wait(10) and released.set())
    waiter.start()
    assert not released.wait(0.1)
    arrivals.arrived()  # the last login opens it
    assert released.wait(5)
    waiter.join(5)
    assert Arrivals(0).wait(0)


def test_the_report_finds_the_most_spawns_pending_at_once():
    from sovereign_hub.sandbox.loadtest import Report, UserResult

    def spawned(name: str, at: float, took: float) -> UserResult:
        return UserResult(name, "cpu-small", "eu", "ready", asked_at=at, ready_seconds=took)

    # a: 0-10, b: 1-3, c: 2-12, d: 11-13: three at once between 2 and 3.
    results = [spawned("a", 0, 10), spawned("b", 1, 2), spawned("c", 2, 10), spawned("d", 11, 2)]
    report = Report(LoadPlan(users=4), results, 20.0)
    assert report.peak_concurrent_spawns() == 3
    assert report.spawn_window() == 13


def test_a_bad_plan_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="arrival 'wave'"):
        LoadPlan(arrival="wave")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        LoadPlan(concurrency=0)
    with pytest.raises(ValueError, match="answer_seconds must be positive"):
        LoadPlan(answer_seconds=0)


def test_a_hundred_users_fifty_at_a_time_all_spawn_and_the_audit_trail_is_whole(tmp_path):
    """The issue's small version: 120 users log in; 100 of them spawn, 50 at a time; 20 only
    log in."""
    plan = LoadPlan(
        users=120,
        spawners=100,
        concurrency=50,
        arrival="burst",
        idle_seconds=1.0,
        deadline_seconds=240,
    )
    users = population(plan, POLICY)
    with LoadEnvironment(users, tmp_path / "load") as env:
        report = run(env.hub.url, users, plan)
        summary = report.markdown()
        assert report.unfinished == 0, summary
        assert report.outcomes() == {"ready": 100, "logged-in": 20}, summary
        assert all(r.logged_in for r in report.results), summary
        assert "| logged in without a server | 20 |" in summary
        # The hub knows every user who logged in, with a server or without.
        assert len(env.hub.api("GET", "/users?limit=200").json()) == 120
        # Every server answered /api/status through the proxy, then was stopped.
        assert {r.status_code for r in report.results if r.outcome == "ready"} == {200}, summary
        assert env.running_servers() == 0, summary
        env.hub.stop()  # the spool is delivered before the hub exits
        events = env.audit_events()
        verified = env.verify_audit()
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # One login per user; one request, start and stop per spawning user: the trail is whole.
    assert events["login"] == 120, events
    for family in ("spawn-requested", "server-started", "server-stopped"):
        assert events[family] == 100, (family, events)
    assert events["spawn-failed"] == 0, events


def test_the_hub_can_keep_its_database_in_postgresql(tmp_path, postgres_server):
    """A real PostgreSQL server: the hub's users and servers are rows there, and no SQLite
    file is made (the benchmark's `--hub-db postgresql`)."""
    import psycopg

    plan = LoadPlan(users=4, concurrency=4, arrival="burst", idle_seconds=1.0)
    users = population(plan, POLICY)
    url = postgres_server.create_database("hub_loadtest")
    with LoadEnvironment(users, tmp_path / "load", hub_db=url) as env:
        report = run(env.hub.url, users, plan)
        assert report.outcomes() == {"ready": 4}, report.markdown()
        with psycopg.connect(url) as db:
            names = {row[0] for row in db.execute("SELECT name FROM users")}
            (spawners,) = db.execute("SELECT count(*) FROM spawners").fetchone() or (0,)
        assert {u.name for u in users} <= names
        assert spawners >= 4
    assert not (tmp_path / "load" / "hub" / "jupyterhub.sqlite").exists()


def test_the_hubs_429s_are_waited_out_and_counted_apart_from_failures(tmp_path):
    """JupyterHub's own spawn throttle (``concurrent_spawn_limit``) meets a burst: every 429
    it answers is retried after its Retry-After, every user ends with a server, and the run
    reports exactly as many retried 429s as the hub logged refusals."""
    # Six at once against a limit of one meet the limit (the check below fails the test if
    # they did not); bench_scale.py runs bigger bursts against --concurrent-spawn-limit.
    plan = LoadPlan(users=6, concurrency=6, arrival="burst", idle_seconds=1.0)
    users = population(plan, POLICY)
    throttle = (
        "\nc.JupyterHub.concurrent_spawn_limit = 1"
        "\nc.JupyterHub.spawn_throttle_retry_range = (1, 2)\n"
    )
    with LoadEnvironment(users, tmp_path / "load", extra_config=lambda _: throttle) as env:
        report = run(env.hub.url, users, plan)
        summary = report.markdown()
        refusals = env.hub.log_path.read_text().count("pending spawns, throttling")
    assert report.outcomes() == {"ready": 6}, summary
    assert refusals > 0, "the burst never met the spawn limit: the test proved nothing"
    assert report.throttled() == refusals, summary
    assert f"| 429s waited out and retried | {refusals} |" in summary
    # The wait is the user's, not the spawn's: time to ready counts from the accepted request.
    waited = [r for r in report.results if r.throttled]
    assert all(r.throttled_seconds >= r.throttled * 1.0 for r in waited)


def test_a_spawn_request_answered_late_is_followed_and_counted_apart(tmp_path):
    """A hub slower to answer the spawn request than the browser waits (an ingress's read
    timeout): the simulated user follows the server from the hub's model, as a person
    reloading the page would; the spawn is ready, counted as answered late, not failed."""
    plan = LoadPlan(users=3, concurrency=3, arrival="burst", idle_seconds=0.5, answer_seconds=1)
    users = population(plan, POLICY)
    # Every spawn takes 3 s before it starts, so no request can be answered within 1 s.
    slow = (
        "\nimport asyncio"
        "\nasync def _slow(spawner):"
        "\n    await asyncio.sleep(3)"
        "\nc.Spawner.pre_spawn_hook = _slow\n"
    )
    with LoadEnvironment(users, tmp_path / "load", extra_config=lambda _: slow) as env:
        report = run(env.hub.url, users, plan)
        summary = report.markdown()
        assert env.running_servers() == 0, summary
    assert report.outcomes() == {"ready": 3}, summary
    assert report.answered_late() == (3, 3), summary
    assert "| spawn requests answered late (of which ready) | 3 (3) |" in summary
    # Time to ready counts from the request, the 3 s before the spawn included.
    assert all(r.ready_seconds is not None and r.ready_seconds >= 3 for r in report.results)
    assert {r.status_code for r in report.results} == {200}, summary


def test_a_light_pod_answers_its_own_user_only(tmp_path):
    """Light pods stand in for servers under load, so they refuse what a real one refuses."""
    plan = LoadPlan(users=2, concurrency=2, arrival="burst")
    owner, other = population(plan, POLICY)
    with LoadEnvironment([owner, other], tmp_path / "load") as env:
        tokens = {}
        for user in (owner, other):
            _, landed = login_via_provider(env.hub.url, user.name)
            assert landed.status_code == 200
            tokens[user.name] = env.hub.api("POST", f"/users/{user.name}/tokens", json={}).json()[
                "token"
            ]
        options = {"profile": owner.choice.profile, "region": owner.choice.region}
        assert env.hub.api("POST", f"/users/{owner.name}/server", json=options).ok
        env.hub.wait_for_server(owner.name)
        url = f"{env.hub.url}/user/{owner.name}/api/status"

        def status(token: str | None) -> int:
            headers = {"Authorization": f"token {token}"} if token else {}
            return requests.get(url, headers=headers, timeout=30).status_code

        assert status(tokens[owner.name]) == 200
        assert status(tokens[other.name]) == 403
        assert status(None) == 403
        assert status("not-a-token") == 403
