"""SovereignSpawner in a real JupyterHub and proxy, on the ``kube`` fixture's cluster.

Kubernetes is emulated unless SOVEREIGN_TEST_KUBECONFIG names an API server.
Users, groups and servers are driven through JupyterHub's REST API as a
portal or a script would; the spawn form through a logged-in session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from sovereign_hub.pages import TEMPLATES
from sovereign_hub.sandbox.hubprocess import Hub
from tests.conftest import ROOT

SINGLEUSER = Path(sys.executable).with_name("jupyterhub-singleuser")


def hub_config(kube, policy: Path, **extra) -> str:
    settings = {
        "policy_file": str(policy),
        "namespace": kube.namespace,
        "scheduler_name": kube.scheduler_name,
        "cmd": [str(SINGLEUSER)],
        "args": ["--allow-root"] if os.geteuid() == 0 else [],
        "start_timeout": 30,
        "http_timeout": 30,
        **extra,
    }
    lines = [
        'c.JupyterHub.authenticator_class = "dummy"',
        "c.Authenticator.allow_all = True",
        'c.JupyterHub.spawner_class = "sovereign"',
        f"c.JupyterHub.template_paths = [{str(TEMPLATES)!r}]",
        "from sovereign_hub.pages.admin import AdminView",
        "from sovereign_hub.pages.status import ServerCards",
        f"c.JupyterHub.template_vars = {{'sovereign_servers': ServerCards({str(policy)!r}), "
        f"'sovereign_admin': AdminView({str(policy)!r})}}",
        "from sovereign_hub.pages import upgrade",
        "c.JupyterHub.extra_handlers = upgrade.handlers",
    ]
    lines += [f"c.SovereignSpawner.{k} = {v!r}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def policy_copy(tmp_path):
    path = tmp_path / "policy.yaml"
    shutil.copy(ROOT / "examples" / "policy.yaml", path)
    return path


@pytest.fixture
def start_hub(kube, tmp_path):
    hubs: list[Hub] = []

    def start(policy: Path, cleanup_servers: bool = True, extra_config: str = "", **extra) -> Hub:
        config = (
            hub_config(kube, policy, **extra)
            + f"c.JupyterHub.cleanup_servers = {cleanup_servers}\n"
            + extra_config
        )
        hub = Hub(tmp_path / "hub", config, env={"KUBECONFIG": str(kube.kubeconfig)})
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        hub.stop()


def audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """Hub config sending the spawner's events to an audit trail, and that trail's SQLite
    store (its HMAC key in the environment the hub process inherits)."""
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", "k" * 40)
    store = tmp_path / "audit.sqlite"
    config = f"""
c.AuditTrail.spool_dir = {str(tmp_path / "spool")!r}
c.AuditTrail.hub_instance = "hub-test"
c.AuditTrail.sinks = [{{"type": "sqlite", "path": {str(store)!r}}}]
from sovereign_hub.audit import hub_reporter
c.SovereignSpawner.reporter = hub_reporter(c)
"""
    return config, store


def add_users(hub: Hub, group: str, *users: str) -> None:
    for user in users:
        hub.api("POST", f"/users/{user}")
    response = hub.api("POST", f"/groups/{group}", json={"users": list(users)})
    if response.status_code == 409:
        response = hub.api("POST", f"/groups/{group}/users", json={"users": list(users)})
    assert response.ok, response.text


def spawn(hub: Hub, user: str, **options) -> requests.Response:
    return hub.api("POST", f"/users/{user}/server", json=options)


async def pod_of(core, kube, user: str):
    return await core.read_namespaced_pod(f"jupyter-{user}", kube.namespace)


async def test_forged_requests_are_refused_and_no_pod_is_created(
    kube, core, start_hub, policy_copy
):
    hub = start_hub(policy_copy)
    add_users(hub, "us-analysts", "bob")
    hub.api("POST", "/users/carol")
    cases = [
        ("bob", {"profile": "gpu-a100"}, 403, "Profile 'One A100 GPU' is not available to you."),
        (
            "bob",
            {"profile": "cpu-small", "region": "eu"},
            403,
            "You may not run 'Small (CPU)' in eu",
        ),
        (
            "bob",
            {"profile": "cpu-small", "image": "evil/miner:latest"},
            403,
            "setting 'image' directly is not allowed",
        ),
        (
            "bob",
            {"profile": "cpu-small", "extra_resource_limits": {"nvidia.com/gpu": 8}},
            403,
            "'extra_resource_limits'",
        ),
        ("bob", {"profile": "cpu-small", "version": "2026.09"}, 403, "was revoked"),
        ("bob", {"profile": "cpu-small", "colour": "red"}, 400, "unknown option 'colour'"),
        ("bob", {"profile": ["cpu-small"]}, 400, "must be text"),
        ("bob", {"profile": "c" * 500}, 400, "longer than 100 characters"),
        ("carol", {}, 403, "None of your groups is entitled to a notebook server"),
    ]
    for user, options, status, text in cases:
        response = spawn(hub, user, **options)
        assert response.status_code == status, (options, response.text)
        assert text in response.json()["message"], (options, response.text)
    assert (await core.list_namespaced_pod(kube.namespace)).items == []
    assert (await core.list_namespaced_persistent_volume_claim(kube.namespace)).items == []
    assert "spawn_denied" in hub.logs()


PRE_SPAWN_HOOK = """
async def add_team(spawner):
    spawner.environment["TEAM"] = "team-" + spawner.user.name
    spawner.extra_labels["team"] = "team-" + spawner.user.name
c.Spawner.pre_spawn_hook = add_team
"""


async def test_gpu_profile_lands_on_an_eu_gpu_node_and_us_users_stay_in_the_us(
    kube, core, start_hub, policy_copy
):
    hub = start_hub(policy_copy, extra_config=PRE_SPAWN_HOOK)
    add_users(hub, "eu-researchers", "ana")
    add_users(hub, "us-analysts", "bob")
    assert spawn(hub, "ana", profile="gpu-a100").status_code in (201, 202)
    assert spawn(hub, "bob", profile="cpu-small").status_code in (201, 202)
    hub.wait_for_server("ana")
    hub.wait_for_server("bob")

    ana = await pod_of(core, kube, "ana")
    assert ana.spec.node_name == kube.nodes["eu-gpu-1"]
    assert ana.metadata.labels["sovereign-hub.io/region"] == "eu"
    assert ana.metadata.annotations["sovereign-hub.io/image-digest"] == (
        "sha256:69c72823a4e0dbee17114bbe44d0377bc9a39504a76f6314995f7d5bfaa98d60"
    )
    assert ana.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    assert ana.spec.automount_service_account_token is False
    # What the admin's pre_spawn_hook adds is kept alongside the plan.
    env = {e.name: e.value for e in ana.spec.containers[0].env}
    assert (env["TEAM"], env["SOVEREIGN_HUB_REGION"]) == ("team-ana", "eu")
    assert ana.metadata.labels["team"] == "team-ana"
    bob = await pod_of(core, kube, "bob")
    assert bob.spec.node_name == kube.nodes["us-cpu-1"]
    assert bob.metadata.labels["sovereign-hub.io/region"] == "us"
    claims = {
        c.metadata.name: c
        for c in (await core.list_namespaced_persistent_volume_claim(kube.namespace)).items
    }
    assert claims["home-ana-eu"].spec.storage_class_name == "ssd-eu"
    assert claims["home-bob-us"].spec.storage_class_name == "ssd-us"
    assert claims["home-ana-eu"].status.phase == "Bound"
    # The notebook knows its region.
    token = hub.api("POST", "/users/ana/tokens", json={}).json()["token"]
    status = requests.get(
        f"{hub.url}/user/ana/api/status", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert status.status_code == 200
    # The options are the policy's to apply at start: JupyterHub does not call them unhandled.
    assert "unhandled user_options" not in hub.log_path.read_text(errors="replace")


async def test_with_no_home_storage_the_home_is_an_emptydir_and_no_claim_is_made_in_emulated_cluster(
    kube, core, start_hub, policy_copy
):
    """``singleuser.storage.type: none``: the pod starts with its home on an emptyDir."""
    hub = start_hub(policy_copy, extra_config='c.SovereignSpawner.home_storage = "none"\n')
    add_users(hub, "eu-researchers", "ana")
    assert spawn(hub, "ana", profile="cpu-small").status_code in (201, 202)
    hub.wait_for_server("ana")
    pod = await pod_of(core, kube, "ana")
    (home,) = [v for v in pod.spec.volumes if v.name == "sovereign-home"]
    assert home.empty_dir is not None
    assert home.persistent_volume_claim is None
    mount = next(m for m in pod.spec.containers[0].volume_mounts if m.name == "sovereign-home")
    assert mount.mount_path == "/home/jovyan"
    assert (await core.list_namespaced_persistent_volume_claim(kube.namespace)).items == []


def progress_events(hub: Hub, user: str, timeout: float = 90) -> list[dict]:
    """The progress page's event stream, until the spawn succeeds or fails."""
    events = []
    with hub.api("GET", f"/users/{user}/server/progress", stream=True, timeout=timeout) as response:
        for line in response.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                events.append(event)
                if event.get("failed") or event.get("ready"):
                    break
    return events


async def test_unschedulable_gpu_shows_the_schedulers_reason_and_a_clear_timeout(
    kube, core, start_hub, policy_copy
):
    hub = start_hub(policy_copy, start_timeout=15)
    add_users(hub, "eu-researchers", "ana")
    # The cluster has no MIG slices: the pod can never be scheduled.
    assert spawn(hub, "ana", profile="gpu-slice").status_code == 202
    events = progress_events(hub, "ana")
    messages = [e.get("message", "") for e in events]
    assert any("Insufficient nvidia.com/mig-1g.5gb" in m for m in messages), messages
    assert events[-1]["failed"] is True
    assert "did not start within 15 seconds" in events[-1]["message"]
    assert "The scheduler reports: 0/3 nodes are available" in events[-1]["message"]
    # The failed spawn gave its GPU back.
    assert "spawn_failed" in hub.logs()


async def test_pin_survives_a_hub_restart_until_the_user_upgrades(
    kube, core, start_hub, policy_copy
):
    hub = start_hub(policy_copy)
    add_users(hub, "us-analysts", "bob")
    assert spawn(hub, "bob", profile="cpu-small").status_code in (201, 202)
    hub.wait_for_server("bob")
    first = (await pod_of(core, kube, "bob")).metadata.annotations["sovereign-hub.io/image"]
    hub.api("DELETE", "/users/bob/server")
    hub.wait_for_server("bob", ready=False)
    hub.stop()

    # A newer version is released; the hub restarts.
    doc = yaml.safe_load(policy_copy.read_text())
    newer = "quay.io/jupyter/base-notebook@sha256:" + "c" * 64
    doc["channels"]["datascience"]["versions"].append(
        {"version": "2026.12", "image": newer, "released": "2026-11-20"}
    )
    policy_copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    hub = start_hub(policy_copy)
    assert spawn(hub, "bob", profile="cpu-small").status_code in (201, 202)
    hub.wait_for_server("bob")
    assert (await pod_of(core, kube, "bob")).metadata.annotations["sovereign-hub.io/image"] == first
    hub.api("DELETE", "/users/bob/server")
    hub.wait_for_server("bob", ready=False)

    assert spawn(hub, "bob", profile="cpu-small", version="2026.12").status_code in (201, 202)
    hub.wait_for_server("bob")
    assert (await pod_of(core, kube, "bob")).metadata.annotations["sovereign-hub.io/image"] == newer
    assert "image_pin_changed" in hub.logs()


def tight_quota(policy_copy: Path, quota: int) -> Path:
    doc = yaml.safe_load(policy_copy.read_text())
    doc["groups"]["eu-researchers"].update(gpuQuota=quota, perUserGpuLimit=1)
    doc["gpuQueue"] = {"enabled": False}  # refusals, as without the queue (test_gpu_queue_hub)
    policy_copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return policy_copy


async def test_twenty_concurrent_gpu_spawns_admit_only_the_quota(
    kube, core, start_hub, policy_copy
):
    hub = start_hub(tight_quota(policy_copy, 2))
    users = [f"user{i:02d}" for i in range(20)]
    add_users(hub, "eu-researchers", *users)
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda u: spawn(hub, u, profile="gpu-a100"), users))
    admitted = [u for u, r in zip(users, responses, strict=True) if r.status_code in (201, 202)]
    refused = [r for r in responses if r.status_code == 403]
    assert len(admitted) == 2, [r.status_code for r in responses]
    assert len(refused) == 18
    holders = ", ".join(f"{u}: 1" for u in sorted(admitted))
    for r in refused:
        assert (
            f"group 'eu-researchers' holds 2 of its 2-GPU quota ({holders})" in r.json()["message"]
        )
    for user in admitted:
        hub.wait_for_server(user)
    # A stopped server gives its GPU back to the group.
    hub.api("DELETE", f"/users/{admitted[0]}/server")
    hub.wait_for_server(admitted[0], ready=False)
    refused_user = next(u for u in users if u not in admitted)
    assert spawn(hub, refused_user, profile="gpu-a100").status_code in (201, 202)
    hub.wait_for_server(refused_user)


async def test_gpu_holds_are_rebuilt_from_running_servers_after_a_restart(
    kube, core, start_hub, policy_copy
):
    hub = start_hub(tight_quota(policy_copy, 1), cleanup_servers=False)
    add_users(hub, "eu-researchers", "ana", "bob")
    assert spawn(hub, "ana", profile="gpu-a100").status_code in (201, 202)
    hub.wait_for_server("ana")
    hub.stop()  # ana's server keeps running
    hub = start_hub(policy_copy, cleanup_servers=False)
    hub.wait_for_server("ana")
    refused = spawn(hub, "bob", profile="gpu-a100")
    assert refused.status_code == 403
    assert "holds 1 of its 1-GPU quota (ana: 1)" in refused.json()["message"]
    hub.api("DELETE", "/users/ana/server")
    hub.wait_for_server("ana", ready=False)


async def test_the_active_server_limit_counts_running_servers_across_a_restart(
    kube, core, start_hub, policy_copy
):
    """JupyterHub's ``active_server_limit`` on a hub of our spawners, whose count asks only
    the spawners that may be active (spawner/activecount.py): a running server counts,
    also once a restarted hub has found it in its database, and a stopped one no longer."""
    limit = "c.JupyterHub.active_server_limit = 1\n"
    hub = start_hub(policy_copy, cleanup_servers=False, extra_config=limit)
    add_users(hub, "us-analysts", "ana", "bob")
    assert spawn(hub, "ana", profile="cpu-small").status_code in (201, 202)
    hub.wait_for_server("ana")
    refused = spawn(hub, "bob", profile="cpu-small")
    assert refused.status_code == 429, refused.text
    assert "Active user limit exceeded" in refused.json()["message"]
    hub.stop()  # ana's server keeps running

    hub = start_hub(policy_copy, cleanup_servers=False, extra_config=limit)
    hub.wait_for_server("ana")
    assert spawn(hub, "bob", profile="cpu-small").status_code == 429
    hub.api("DELETE", "/users/ana/server")
    hub.wait_for_server("ana", ready=False)
    assert spawn(hub, "bob", profile="cpu-small").status_code in (201, 202)
    hub.wait_for_server("bob")
    hub.api("DELETE", "/users/bob/server")
    hub.wait_for_server("bob", ready=False)


def login(hub: Hub, user: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{hub.url}/hub/login", timeout=30)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    response = session.post(
        f"{hub.url}/hub/login", data={"username": user, "password": "x", "_xsrf": xsrf}, timeout=30
    )
    assert response.ok
    return session


async def test_spawn_form_shows_only_entitlements_and_a_no_access_page(
    kube, start_hub, policy_copy
):
    hub = start_hub(policy_copy)
    add_users(hub, "us-analysts", "bob")
    add_users(hub, "eu-researchers", "ana")
    hub.api("POST", "/users/carol")
    bob = login(hub, "bob").get(f"{hub.url}/hub/spawn", timeout=30).content.decode()
    assert 'value="cpu-small"' in bob
    assert "gpu-a100" not in bob
    assert "United States (Virginia)" in bob
    assert "European Union" not in bob
    ana = login(hub, "ana").get(f"{hub.url}/hub/spawn", timeout=30).content.decode()
    assert 'value="gpu-a100"' in ana
    assert 'value="gpu-slice"' in ana
    assert "1 × NVIDIA A100 40 GB" in ana
    carol = login(hub, "carol").get(f"{hub.url}/hub/spawn", timeout=30).content.decode()
    assert "You do not have access to start a server" in carol
    assert "Signed in as carol; the groups the hub saw: none." in carol
    assert re.search(r'id="sovereign-sign-out" href="/hub/logout"', carol)
    assert "#spawn_form .feedback-container { display: none; }" in carol
    # Submitting a forged choice through the form gets the reason on the form.
    session = login(hub, "bob")
    page = session.get(f"{hub.url}/hub/spawn", timeout=30)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    data = {
        "profile": "gpu-a100",
        "_xsrf": xsrf.group(1) if xsrf else session.cookies.get("_xsrf", ""),
    }
    refused = session.post(f"{hub.url}/hub/spawn", data=data, timeout=30)
    assert refused.status_code == 403
    # The refusal card: one heading, the reason once, whom the hub saw, a way out; the form stays.
    page = refused.text
    assert page.count("Profile &#39;One A100 GPU&#39; is not available to you.") == 1
    assert re.findall(r"<h1[^>]*>([^<]*)</h1>", page) == ["Your server was not started"]
    assert "Error:" not in page
    assert re.search(r'id="sovereign-refusal-account">bob<', page)
    assert re.search(r'id="sovereign-refusal-groups">us-analysts<', page)
    assert re.search(r'id="sovereign-sign-out" href="/hub/logout"', page)
    assert 'value="cpu-small"' in page


async def test_spawn_form_submission_starts_the_chosen_profile(kube, core, start_hub, policy_copy):
    hub = start_hub(policy_copy)
    add_users(hub, "eu-researchers", "ana")
    session = login(hub, "ana")
    xsrf = session.cookies.get("_xsrf", path="/hub/")
    form = {
        "profile": "cpu-small",
        "region-cpu-small": "eu",
        "version-gpu-a100": "2026.11",
        "_xsrf": xsrf,
    }
    response = session.post(f"{hub.url}/hub/spawn", data=form, timeout=60, allow_redirects=False)
    assert response.status_code == 302, response.content.decode()[-2000:]
    hub.wait_for_server("ana")
    pod = await pod_of(core, kube, "ana")
    assert pod.metadata.labels["sovereign-hub.io/profile"] == "cpu-small"
    assert pod.spec.node_name == kube.nodes["eu-cpu-1"]


async def test_the_audit_trail_records_refusals_starts_and_stops(
    kube, start_hub, policy_copy, tmp_path, monkeypatch
):
    from sovereign_hub.audit.store import Filters, read

    audit, store = audited(tmp_path, monkeypatch)
    hub = start_hub(policy_copy, extra_config=audit)
    add_users(hub, "eu-researchers", "ana")
    add_users(hub, "us-analysts", "bob")
    assert spawn(hub, "bob", profile="gpu-a100").status_code == 403
    assert spawn(hub, "ana", profile="gpu-a100").status_code in (201, 202)
    hub.wait_for_server("ana")
    hub.api("DELETE", "/users/ana/server")
    hub.wait_for_server("ana", ready=False)

    def events():
        return list(read(str(store))) if store.exists() else []

    for _ in range(100):
        if any(r["schema"].endswith("/server-stopped/v2") for r in events()):
            break
        time.sleep(0.1)
    records = events()
    by_type = {r["schema"].split("/")[-2]: r["data"] for r in records}
    assert by_type["spawn-denied"]["subject"] == "bob"
    assert by_type["spawn-denied"]["reasons"][0]["code"] == "profile_not_entitled"
    started = by_type["server-started"]
    assert (started["subject"], started["region"], started["gpus"], started["gpu_type"]) == (
        "ana",
        "eu",
        1,
        "a100",
    )
    assert (
        started["digest"]
        == "sha256:69c72823a4e0dbee17114bbe44d0377bc9a39504a76f6314995f7d5bfaa98d60"
    )
    assert started["node"] == kube.nodes["eu-gpu-1"]
    assert by_type["server-stopped"]["gpus"] == 1
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert list(read(str(store), Filters(user="bob", event="spawn-denied")))
    result = subprocess.run(
        [str(Path(sys.executable).with_name("sovhub")), "audit", "verify", str(store)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    assert "chain intact" in result.stdout


NEWER = """      - version: "2026.12"
        image: quay.io/jupyter/base-notebook@sha256:{}
        released: 2026-12-01
""".format("c" * 64)


def card_text(session: requests.Session, hub: Hub) -> str:
    page = session.get(f"{hub.url}/hub/home", timeout=30).text
    card = re.search(r'<section class="card mb-3 sovereign-server".*?</section>', page, re.S)
    assert card, page[-3000:]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", card.group(0))).strip()


async def test_home_page_and_rest_api_show_the_pin_and_what_comes_next(
    kube, start_hub, policy_copy
):
    """The status card and the server's state in the REST API say the same facts."""
    hub = start_hub(policy_copy)
    add_users(hub, "eu-researchers", "ana")
    assert spawn(hub, "ana", profile="cpu-small", region="eu").status_code in (201, 202)
    model = hub.wait_for_server("ana")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    state = model["servers"][""]["state"]["sovereign"]
    assert state["allocation"]["profile"] == "cpu-small"
    assert state["allocation"]["region"] == "eu"
    assert state["allocation"]["node"] == kube.nodes["eu-cpu-1"]
    assert state["pins"]["datascience"]["version"] == "2026.11"
    assert state["pins"]["datascience"]["pinnedAt"].startswith(today)
    ana = login(hub, "ana")
    card = card_text(ana, hub)
    assert "Your server: running" in card
    assert "Profile Small (CPU)" in card
    assert "Region European Union (Frankfurt)" in card
    assert "GPUs none" in card
    assert f"Node {kube.nodes['eu-cpu-1']}" in card
    assert "Data science, version 2026.11 ( sha256:876e3c3e40c4 )" in card
    assert f"Pinned since {today}" in card
    assert "is available" not in card
    # A newer release: offered, never forced; it applies at the next start.
    text = policy_copy.read_text().replace("  pytorch:\n", NEWER + "  pytorch:\n", 1)
    policy_copy.write_text(text)
    assert "Version 2026.12 is available. It applies at your next start" in card_text(ana, hub)
    outlook = hub.api("GET", "/users/ana").json()["servers"][""]["state"]["sovereign"]["outlook"]
    assert outlook["datascience"]["newer"] == [
        {
            "version": "2026.12",
            "image": "quay.io/jupyter/base-notebook@sha256:" + "c" * 64,
            "released": "2026-12-01",
        }
    ]
    assert outlook["datascience"]["moveAtNextStart"] is None
    # "Upgrade at next start" while the server runs: a form on the card, kept in the state.
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', ana.get(f"{hub.url}/hub/home").text)[1]
    upgrade = f"{hub.url}/hub/sovereign/upgrade"
    bogus = ana.post(upgrade, data={"_xsrf": xsrf, "channel": "datascience", "version": "2025.1"})
    assert bogus.status_code == 400
    assert "Version &#39;2025.1&#39; of Data science is not on offer" in bogus.text
    choice = {"channel": "datascience", "version": "2026.12"}
    assert requests.post(upgrade, data=choice, timeout=30).status_code == 403  # no session
    assert ana.post(upgrade, data=choice, timeout=30).status_code == 403  # no XSRF token
    assert (
        hub.api("GET", "/users/ana").json()["servers"][""]["state"]["sovereign"][
            "upgradeAtNextStart"
        ]
        == {}
    )
    chosen = ana.post(upgrade, data={"_xsrf": xsrf, "channel": "datascience", "version": "2026.12"})
    assert chosen.ok
    assert "Your next start uses version 2026.12" in card_text(ana, hub)
    state = hub.api("GET", "/users/ana").json()["servers"][""]["state"]["sovereign"]
    assert state["upgradeAtNextStart"] == {"datascience": "2026.12"}
    assert state["pins"]["datascience"]["version"] == "2026.11"  # nothing moves while it runs
    assert hub.api("DELETE", "/users/ana/server").status_code in (202, 204)
    hub.wait_for_server("ana", ready=False)
    # The next start names no version: the stored choice applies, once.
    assert spawn(hub, "ana", profile="cpu-small", region="eu").status_code in (201, 202)
    state = hub.wait_for_server("ana")["servers"][""]["state"]["sovereign"]
    assert state["pins"]["datascience"]["version"] == "2026.12"
    assert state["upgradeAtNextStart"] == {}
    assert "is available" not in card_text(ana, hub)
    # Stopped and offered a newer version, the card links to the start page with it.
    text = text.replace(
        NEWER, NEWER + NEWER.replace("2026.12", "2027.01").replace("c" * 64, "d" * 64)
    )
    policy_copy.write_text(text)
    assert hub.api("DELETE", "/users/ana/server").status_code in (202, 204)
    hub.wait_for_server("ana", ready=False)
    page = ana.get(f"{hub.url}/hub/home", timeout=30).text
    assert "Your server: stopped" in card_text(ana, hub)
    assert (
        'href="/hub/spawn/ana?profile=cpu-small&amp;version-cpu-small=2027.01'
        '&amp;region-cpu-small=eu"' in page
    )
    # Revoking the pinned version: the next start moves, and the card says so first.
    policy_copy.write_text(
        text.replace(
            "released: 2026-12-01\n", "released: 2026-12-01\n        revoked: CVE-2026-7\n", 1
        )
    )
    assert (
        "Version 2026.12 was revoked (CVE-2026-7): your next start moves to version 2027.01."
        in card_text(ana, hub)
    )


def table_rows(page: str, table_id: str) -> list[list[str]]:
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', page, re.S)
    assert table, page[-3000:]
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S)[1:]  # without the header
    return [
        [
            re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)
        ]
        for r in rows
    ]


async def test_admin_page_shows_pins_regions_gpus_and_the_ledger(kube, start_hub, policy_copy):
    hub = start_hub(policy_copy, extra_config="c.Authenticator.admin_users = {'ada'}\n")
    add_users(hub, "eu-researchers", "ana")
    hub.api("POST", "/users/carol")
    assert spawn(hub, "ana", profile="gpu-a100").status_code in (201, 202)
    hub.wait_for_server("ana")
    page = login(hub, "ada").get(f"{hub.url}/hub/admin", timeout=30).text
    assert 'id="react-admin-hook"' in page  # JupyterHub's own panel is still there
    assert table_rows(page, "sovereign-ledger") == [["eu-researchers", "1", "4", "ana: 1"]]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    ana = [r for r in table_rows(page, "sovereign-user-servers") if r[0] == "ana"]
    assert ana == [
        [
            "ana", "default", "running", "gpu-a100", "eu", "1 (eu-researchers)",
            kube.nodes["eu-gpu-1"], f"pytorch 2026.11 (since {today})",
        ]
    ]  # fmt: skip
    # Not for anyone else: ana's own admin page is refused, and her pages carry no table.
    ana_session = login(hub, "ana")
    assert ana_session.get(f"{hub.url}/hub/admin", timeout=30).status_code == 403
    assert "sovereign-ledger" not in ana_session.get(f"{hub.url}/hub/home", timeout=30).text
