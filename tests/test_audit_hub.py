"""The audit trail inside a real JupyterHub: REST API actions, the hub's own
server-action events, policy loads, and the trail's metrics on /hub/metrics.

A real hub and proxy, a real OIDC provider, the Sovereign spawner on the
``kube`` fixture's cluster (emulated unless SOVEREIGN_TEST_KUBECONFIG names one).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time

from sovereign_hub.audit.store import read
from sovereign_hub.sandbox.hubprocess import Hub, free_port
from sovereign_hub.sandbox.oidc import login_via_provider
from sovereign_hub.sandbox.run import hub_config
from tests.conftest import ROOT

POLICY = ROOT / "examples" / "policy.yaml"


def family(record: dict) -> str:
    return record["schema"].rstrip("/").split("/")[-2]


def test_the_hub_records_api_actions_server_actions_policy_and_metrics(kube, tmp_path, oidc_ana):
    port = free_port()
    (tmp_path / "audit-hmac-key").write_text(secrets.token_hex(32))
    config = hub_config(
        issuer=oidc_ana.issuer, port=port, policy=POLICY, cluster=kube, state=tmp_path
    )
    env = {"KUBECONFIG": str(kube.kubeconfig), "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32)}
    hub = Hub(tmp_path / "hub", config, env=env, port=port)
    try:
        _, page = login_via_provider(hub.url, "ana")
        assert page.status_code == 200
        started = hub.api(
            "POST", "/users/ana/server", json={"profile": "cpu-small", "region": "eu"}
        )
        assert started.status_code in (201, 202), started.text
        hub.wait_for_server("ana")
        token = hub.api("POST", "/users/ana/tokens", json={"note": "ci"}).json()["token"]
        refused = hub.api("DELETE", "/users/nobody-here/server")
        assert refused.status_code == 404
        assert hub.api("DELETE", "/users/ana/server").status_code in (202, 204)
        hub.wait_for_server("ana", ready=False)
        metrics = hub.api("GET", "/../metrics").text
    finally:
        hub.stop()

    store = str(tmp_path / "audit.sqlite")
    deadline = time.monotonic() + 20
    records: list[dict] = []
    while time.monotonic() < deadline:
        records = list(read(store))
        if sum(family(r) == "hub-server-action" for r in records) >= 2:
            break
        time.sleep(0.25)

    actions = [r["data"] for r in records if family(r) == "api-action"]
    assert {
        "actor": "test-admin", "subject": "ana", "method": "POST",
        "route": "/hub/api/users/ana/server", "target_user": "ana", "status": started.status_code,
    } in actions  # fmt: skip
    assert any(
        a["method"] == "DELETE" and a["target_user"] == "nobody-here" and a["status"] == 404
        for a in actions
    )
    assert any(a["route"] == "/hub/api/users/ana/tokens" for a in actions)
    assert all(a["method"] != "GET" for a in actions)  # reads are not actions

    hub_actions = [(r["data"]["action"], r["data"]["subject"]) for r in records
                   if family(r) == "hub-server-action"]  # fmt: skip
    assert ("start", "ana") in hub_actions
    assert ("stop", "ana") in hub_actions

    loads = [r["data"] for r in records if family(r) == "policy-loaded"]
    assert len(loads) == 1  # recorded once, not on every login and spawn
    assert loads[0]["policy_sha256"] == hashlib.sha256(POLICY.read_bytes()).hexdigest()

    # The token the API handed out is nowhere in the trail or the hub's log.
    assert token not in json.dumps(records)
    assert token not in hub.log_path.read_text(errors="replace")

    assert 'sovereign_audit_events_emitted_total{hub="sandbox"}' in metrics
    assert 'sovereign_audit_events_delivered_total{hub="sandbox",sink="sqlite"}' in metrics
    assert 'sovereign_audit_oldest_undelivered_seconds{hub="sandbox",sink="sqlite"}' in metrics
    assert "sovereign_audit_spool_bytes" in metrics


def test_api_action_keeps_method_route_target_and_status_only():
    from sovereign_hub.audit.hubhooks import api_action

    assert api_action("GET", "/hub/api/users/ana", 200, "admin") is None
    assert api_action("POST", "/hub/spawn/ana", 302, "ana") is None  # not the REST API
    event = api_action("DELETE", "/hub/api/groups/eu%20team/users", 200, "admin")
    assert event == {
        "actor": "admin", "subject": "admin", "method": "DELETE",
        "route": "/hub/api/groups/eu%20team/users", "target_group": "eu team", "status": 200,
    }  # fmt: skip
    legacy = api_action("DELETE", "/hub/api/authorizations/token/abc123secret", 200, "svc")
    assert legacy is not None
    assert "abc123secret" not in str(legacy)
    assert legacy["route"] == "/hub/api/authorizations/token/{token}"
