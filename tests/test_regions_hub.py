"""A region is a cluster: one real JupyterHub and proxy, two emulated Kubernetes clusters.

No real API server can run here, so both clusters are emulated (sandbox/kube):
each has its own API server, scheduler and process kubelet, on its own port
and its own block of loopback pod addresses. The EU region runs in the hub's
own cluster (the hub's KUBECONFIG); the policy gives the US region a cluster
of its own (``us-east``, by kubeconfig path). The proxy reaches pods of both
by their pod IPs: the flat-network mode, which loopback gives for free.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import requests
import yaml

from sovereign_hub.audit.store import read
from sovereign_hub.sandbox.hubprocess import Hub
from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.spawner.overlay import HOME_VOLUME
from tests.conftest import ROOT, TEST_NODES
from tests.test_spawner_hub import add_users, hub_config, spawn

if os.environ.get("SOVEREIGN_TEST_KUBECONFIG"):
    pytest.skip(
        "needs two API servers; SOVEREIGN_TEST_KUBECONFIG names one", allow_module_level=True
    )


def _region_inventory(tmp_path: Path, label: str) -> Path:
    """The test inventory's nodes of one node region: one cluster's machines."""
    doc = yaml.safe_load(TEST_NODES.read_text())
    doc["nodes"] = [
        n for n in doc["nodes"] if n["labels"]["topology.kubernetes.io/region"] == label
    ]
    path = tmp_path / f"nodes-{label}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def clusters(make_cluster, tmp_path) -> tuple[Cluster, Cluster]:
    """(EU, US): two emulated clusters, each holding only its region's nodes."""
    eu = make_cluster(_region_inventory(tmp_path, "eu-central-1"))
    us = make_cluster(_region_inventory(tmp_path, "us-east-1"))
    return eu, us


AUDIT = """
c.AuditTrail.spool_dir = {spool!r}
c.AuditTrail.hub_instance = "hub-regions"
c.AuditTrail.sinks = [{{"type": "sqlite", "path": {store!r}}}]
from sovereign_hub.audit import hub_reporter
c.SovereignSpawner.reporter = hub_reporter(c)
"""


def start_hub(
    eu: Cluster,
    us: Cluster,
    tmp_path: Path,
    monkeypatch,
    cleanup: bool = True,
    adopt=None,
    us_cluster: dict | None = None,
    extra_config: str = "",
) -> Hub:
    """The hub in the EU (its own) cluster; the policy puts the US region in ``us``, and
    ``adopt`` maps a region to its ``adoptClaims``; ``us_cluster`` adds to the US region's
    ``cluster``, ``extra_config`` to the hub's configuration."""
    doc = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    doc["regions"]["us"]["cluster"] = {
        "name": "us-east",
        "kubeconfig": str(us.kubeconfig),
        **(us_cluster or {}),
    }
    for region, template in (adopt or {}).items():
        doc["regions"][region]["adoptClaims"] = template
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", "k" * 40)  # inherited by the hub process
    audit = AUDIT.format(spool=str(tmp_path / "spool"), store=str(tmp_path / "audit.sqlite"))
    config = hub_config(eu, policy) + f"c.JupyterHub.cleanup_servers = {cleanup}\n" + audit
    config += extra_config
    return Hub(tmp_path / "hub", config, env={"KUBECONFIG": str(eu.kubeconfig)})


def names(cluster: Cluster, kind: str) -> set[str]:
    """Names of the pods or claims in ``cluster``'s API, asked of that API server."""

    async def list_them() -> set[str]:
        from kubernetes_asyncio import client

        core = client.CoreV1Api(cluster._client)
        if kind == "pods":
            found = await core.list_namespaced_pod(cluster.namespace)
        else:
            found = await core.list_namespaced_persistent_volume_claim(cluster.namespace)
        return {item.metadata.name for item in found.items}

    return cluster.call(list_them())


def create_claim(cluster: Cluster, name: str, storage_class: str, owner: str | None = None) -> None:
    """A claim as Zero to JupyterHub left it (KubeSpawner annotates it with its user), made
    through ``cluster``'s API server."""

    async def create() -> None:
        from kubernetes_asyncio import client

        annotations = {"hub.jupyter.org/username": owner} if owner else {}
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": storage_class,
                "resources": {"requests": {"storage": "10Gi"}},
            },
        }
        await client.CoreV1Api(cluster._client).create_namespaced_persistent_volume_claim(
            cluster.namespace, body
        )

    cluster.call(create())


def home_claim_of(cluster: Cluster, user: str) -> str:
    """The claim the user's pod mounts as its home volume, read from ``cluster``'s API."""

    async def read() -> str:
        from kubernetes_asyncio import client

        pod = await client.CoreV1Api(cluster._client).read_namespaced_pod(
            f"jupyter-{user}", cluster.namespace
        )
        (home,) = [v for v in pod.spec.volumes if v.name == HOME_VOLUME]
        return home.persistent_volume_claim.claim_name

    return cluster.call(read())


def audit_records(tmp_path: Path, family: str, count: int = 1) -> list[dict]:
    """The audit trail's records of one event family, once ``count`` of them are stored."""
    store = tmp_path / "audit.sqlite"
    found: list[dict] = []
    for _ in range(150):
        if store.exists():
            found = [r for r in read(str(store)) if f"/{family}/" in r["schema"]]
            if len(found) >= count:
                break
        time.sleep(0.1)
    return found


def test_existing_claims_are_adopted_only_in_the_region_that_adopts_them(
    clusters, tmp_path, monkeypatch
):
    """Zero to JupyterHub's claim-<user> volumes become homes in the adopting region (EU);
    a user without one gets a new home claim there, and the US region adopts nothing even
    where a claim of that name exists."""
    eu, us = clusters
    create_claim(eu, "claim-ana", "ssd-eu", owner="ana")
    create_claim(us, "claim-bob", "ssd-us", owner="bob")
    # A claim whose name a new user's expands to, but KubeSpawner made for another user
    # (names collide across KubeSpawner versions): never handed over.
    create_claim(eu, "claim-cyd", "ssd-eu", owner="cy-d")
    hub = start_hub(eu, us, tmp_path, monkeypatch, adopt={"eu": "claim-{username}"})
    try:
        add_users(hub, "eu-researchers", "ana", "cyd")
        add_users(hub, "us-analysts", "bob")
        for user, region in (("ana", "eu"), ("cyd", "eu"), ("bob", "us")):
            response = spawn(hub, user, profile="cpu-small", region=region)
            assert response.status_code in (201, 202), response.text
        for user in ("ana", "cyd", "bob"):
            hub.wait_for_server(user)
        assert home_claim_of(eu, "ana") == "claim-ana"
        assert home_claim_of(eu, "cyd") == "home-cyd-eu"
        assert home_claim_of(us, "bob") == "home-bob-us"
        assert names(eu, "claims") == {"claim-ana", "claim-cyd", "home-cyd-eu"}
        assert names(us, "claims") == {"claim-bob", "home-bob-us"}
        # Deleting the users keeps every home, the adopted one too: KubeSpawner's
        # delete_pvc (on by default) used to delete claim-ana, whose name it shares.
        delete_users(hub, "ana", "cyd")
        assert names(eu, "claims") == {"claim-ana", "claim-cyd", "home-cyd-eu"}
    finally:
        hub.stop()


def delete_users(hub: Hub, *users: str) -> None:
    for user in users:
        assert hub.api("DELETE", f"/users/{user}/server").status_code in (202, 204)
        hub.wait_for_server(user, ready=False)
        deleted = hub.api("DELETE", f"/users/{user}")
        assert deleted.status_code == 204, deleted.text


def test_adopted_claims_are_deleted_with_their_user_only_when_the_admin_opts_in(
    clusters, tmp_path, monkeypatch
):
    """With delete_adopted_claims on, deleting ana deletes her adopted claim-ana; a claim
    of the same name made for someone else (claim-cyd, cy-d's) is never deleted, and new
    home-<user>-<region> claims are kept."""
    eu, us = clusters
    create_claim(eu, "claim-ana", "ssd-eu", owner="ana")
    create_claim(eu, "claim-cyd", "ssd-eu", owner="cy-d")
    extra = "c.SovereignSpawner.delete_adopted_claims = True\n"
    hub = start_hub(
        eu, us, tmp_path, monkeypatch, adopt={"eu": "claim-{username}"}, extra_config=extra
    )
    try:
        add_users(hub, "eu-researchers", "ana", "cyd")
        for user in ("ana", "cyd"):
            response = spawn(hub, user, profile="cpu-small", region="eu")
            assert response.status_code in (201, 202), response.text
        for user in ("ana", "cyd"):
            hub.wait_for_server(user)
        assert home_claim_of(eu, "ana") == "claim-ana"
        delete_users(hub, "ana", "cyd")
        deadline = time.monotonic() + 60
        while "claim-ana" in names(eu, "claims") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert names(eu, "claims") == {"claim-cyd", "home-cyd-eu"}
    finally:
        hub.stop()


def test_emulated_eu_and_us_clusters_each_hold_only_their_regions_pods_and_claims(
    clusters, tmp_path, monkeypatch
):
    eu, us = clusters
    hub = start_hub(eu, us, tmp_path, monkeypatch)
    try:
        add_users(hub, "eu-researchers", "ana")
        add_users(hub, "us-analysts", "bob")
        assert spawn(hub, "ana", profile="cpu-small", region="eu").status_code in (201, 202)
        response = spawn(hub, "bob", profile="cpu-small", region="us")
        assert response.status_code in (201, 202), response.text
        hub.wait_for_server("ana")
        hub.wait_for_server("bob")

        # Each user's pod and home claim exist in their region's API server, and only there.
        assert names(eu, "pods") == {"jupyter-ana"}
        assert names(us, "pods") == {"jupyter-bob"}
        assert names(eu, "claims") == {"home-ana-eu"}
        assert names(us, "claims") == {"home-bob-us"}

        # Flat network: the hub's proxy reaches the US pod by its pod IP.
        token = hub.api("POST", "/users/bob/tokens", json={}).json()["token"]
        status = requests.get(
            f"{hub.url}/user/bob/api/status",
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
        assert status.status_code == 200, status.text

        # Stopping goes through the same cluster: the US pod is deleted from the US API.
        assert hub.api("DELETE", "/users/bob/server").status_code in (202, 204)
        hub.wait_for_server("bob", ready=False)
        assert "jupyter-bob" not in names(us, "pods")
        assert names(eu, "pods") == {"jupyter-ana"}

        # Every spawn event records its cluster: the hub's own for the EU, us-east for the US.
        for family, count in (("spawn-requested", 2), ("server-started", 2)):
            records = audit_records(tmp_path, family, count)
            assert {(r["data"]["subject"], r["data"]["cluster"]) for r in records} == {
                ("ana", "hub"),
                ("bob", "us-east"),
            }, family
            assert all(r["schema"].endswith("/v2") for r in records)
        stopped = audit_records(tmp_path, "server-stopped")
        assert [(r["data"]["subject"], r["data"]["cluster"]) for r in stopped] == [
            ("bob", "us-east")
        ]
    finally:
        hub.stop()


def read_pod(cluster: Cluster, name: str):
    async def read():
        from kubernetes_asyncio import client

        return await client.CoreV1Api(cluster._client).read_namespaced_pod(name, cluster.namespace)

    return cluster.call(read())


def test_emulated_us_pods_get_their_clusters_scheduler_and_priority_not_the_hubs(
    clusters, tmp_path, monkeypatch
):
    """The hub cluster's user scheduler and PriorityClass (the chart's `scheduling`) exist
    only in the hub's cluster. A US pod naming them would be refused at admission (no such
    PriorityClass in the US API server) or stay Pending (no such scheduler there). It gets
    what the US cluster's policy entry names instead, and starts."""
    eu, us = clusters

    async def priority_class(cluster: Cluster, name: str, value: int) -> None:
        from kubernetes_asyncio import client

        body = {"metadata": {"name": name}, "value": value, "preemptionPolicy": "Never"}
        await client.SchedulingV1Api(cluster._client).create_priority_class(body)

    eu.call(priority_class(eu, "sovereign-users", 10))
    us.call(priority_class(us, "us-notebooks", 20))
    hub_side = (
        'c.SovereignSpawner.priority_class_name = "sovereign-users"\n'
        'c.SovereignSpawner.scheduler_name = "sovereign-user-scheduler"\n'
    )
    hub = start_hub(eu, us, tmp_path, monkeypatch, us_cluster={"priorityClassName": "us-notebooks"},
                    extra_config=hub_side)  # fmt: skip
    try:
        add_users(hub, "us-analysts", "bob")
        response = spawn(hub, "bob", profile="cpu-small", region="us")
        assert response.status_code in (201, 202), response.text
        hub.wait_for_server("bob")
        pod = read_pod(us, "jupyter-bob")
        assert pod.spec.scheduler_name == "default-scheduler"
        assert (pod.spec.priority_class_name, pod.spec.priority) == ("us-notebooks", 20)
        assert pod.spec.preemption_policy == "Never"  # resolved from the US class
    finally:
        hub.stop()


def test_emulated_cluster_refusing_the_pod_tells_the_user_why_not_a_500(
    clusters, tmp_path, monkeypatch
):
    """The API server refuses the pod (admission: an unknown PriorityClass, as a real one
    answers with 403 Forbidden). The REST API answers with the reason and the region, not
    "Internal Server Error", and the trail's spawn-failed says the same."""
    eu, us = clusters
    hub = start_hub(eu, us, tmp_path, monkeypatch,
                    extra_config='c.SovereignSpawner.priority_class_name = "gone"\n')  # fmt: skip
    try:
        add_users(hub, "eu-researchers", "ana")
        response = spawn(hub, "ana", profile="cpu-small", region="eu")
        assert response.status_code == 503, response.text
        message = response.json()["message"]
        assert message.startswith("The cluster of region 'eu' refused starting the server: ")
        assert "no PriorityClass with name gone was found" in message
        (failed,) = audit_records(tmp_path, "spawn-failed")
        assert "no PriorityClass with name gone was found" in failed["data"]["detail"]
        assert names(eu, "pods") == set()
        # The API server's answer is in the log; the refused pod is not. KubeSpawner's own
        # create dumped it whole, environment and API token included ("Failed for ..."); the
        # spawner sends the create itself now, and only the answer is logged.
        log = hub.log_path.read_text(errors="replace")
        assert "The cluster of region 'eu' refused starting the server: HTTP 403" in log
        assert "Failed for" not in log
        assert not re.search(r"'value': '[0-9a-f]{32}'", log)
    finally:
        hub.stop()


def test_emulated_us_cluster_down_at_hub_start_refuses_us_spawns_fast_and_eu_works(
    clusters, tmp_path, monkeypatch
):
    """Failure isolation: the hub starts while the US API server is down; a US spawn is
    refused within seconds with a message naming the region; EU spawns are untouched."""
    eu, us = clusters
    us.stop()
    hub = start_hub(eu, us, tmp_path, monkeypatch)
    try:
        add_users(hub, "eu-researchers", "ana")
        add_users(hub, "us-analysts", "bob")

        began = time.monotonic()
        refused = spawn(hub, "bob", profile="cpu-small", region="us")
        took = time.monotonic() - began
        assert refused.status_code == 503, refused.text
        message = refused.json()["message"]
        assert "Region 'us'" in message, message
        assert "its cluster 'us-east' did not answer" in message, message
        assert "other regions are not affected" in message, message
        assert took < 10, f"the refusal took {took:.1f}s"

        assert spawn(hub, "ana", profile="cpu-small", region="eu").status_code in (201, 202)
        hub.wait_for_server("ana")
        assert names(eu, "pods") == {"jupyter-ana"}

        failed = audit_records(tmp_path, "spawn-failed")
        assert [(r["data"]["subject"], r["data"]["cluster"]) for r in failed] == [
            ("bob", "us-east")
        ]
        assert "Region 'us'" in failed[0]["data"]["detail"]
    finally:
        hub.stop()


def test_emulated_us_cluster_stopped_mid_session_leaves_eu_users_working(
    clusters, tmp_path, monkeypatch
):
    """The US API server goes away while a US and an EU server run: the EU user's server
    still answers, a new EU spawn works, and a new US spawn is refused fast, naming the
    region."""
    eu, us = clusters
    hub = start_hub(eu, us, tmp_path, monkeypatch)
    try:
        add_users(hub, "eu-researchers", "ana", "eve")
        add_users(hub, "us-analysts", "bob", "dan")
        assert spawn(hub, "ana", profile="cpu-small", region="eu").status_code in (201, 202)
        assert spawn(hub, "bob", profile="cpu-small", region="us").status_code in (201, 202)
        hub.wait_for_server("ana")
        hub.wait_for_server("bob")

        us.stop()

        began = time.monotonic()
        refused = spawn(hub, "dan", profile="cpu-small", region="us")
        assert refused.status_code == 503, refused.text
        assert "Region 'us'" in refused.json()["message"]
        assert time.monotonic() - began < 10

        assert spawn(hub, "eve", profile="cpu-small", region="eu").status_code in (201, 202)
        hub.wait_for_server("eve")
        assert names(eu, "pods") == {"jupyter-ana", "jupyter-eve"}
        token = hub.api("POST", "/users/ana/tokens", json={}).json()["token"]
        status = requests.get(
            f"{hub.url}/user/ana/api/status",
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
        assert status.status_code == 200, status.text
    finally:
        hub.stop()


def test_emulated_us_server_is_found_again_in_its_cluster_after_a_hub_restart(
    clusters, tmp_path, monkeypatch
):
    """A restarted hub polls a running US server in the US cluster (its saved allocation
    names the cluster), so the server stays up, and its stop deletes the pod there."""
    eu, us = clusters
    hub = start_hub(eu, us, tmp_path, monkeypatch, cleanup=False)
    add_users(hub, "us-analysts", "bob")
    assert spawn(hub, "bob", profile="cpu-small", region="us").status_code in (201, 202)
    hub.wait_for_server("bob")
    hub.stop()  # bob's server keeps running

    hub = start_hub(eu, us, tmp_path, monkeypatch, cleanup=False)
    try:
        # At start-up the hub polls every running server; a poll that looked in the hub's
        # own cluster would find no pod and mark the server stopped.
        hub.wait_for_server("bob")
        assert names(us, "pods") == {"jupyter-bob"}
        assert hub.api("DELETE", "/users/bob/server").status_code in (202, 204)
        hub.wait_for_server("bob", ready=False)
        assert names(us, "pods") == set()
        assert names(eu, "pods") == set()
    finally:
        hub.stop()
