"""Losing a group at refresh stops the servers it entitled (when configured).

A real OIDC provider process, a real hub with the Sovereign spawner and
authenticator, and the ``kube`` fixture's cluster (emulated unless
SOVEREIGN_TEST_KUBECONFIG names one).
"""

from __future__ import annotations

import secrets
import time

from kubernetes_asyncio.client.exceptions import ApiException

from sovereign_hub.sandbox.hubprocess import Hub, free_port
from sovereign_hub.sandbox.oidc import login_via_provider
from sovereign_hub.sandbox.run import hub_config
from tests.conftest import ANA, ROOT, eventually


async def test_a_server_stops_when_its_entitlement_is_lost(kube, core, tmp_path, oidc_ana):
    port = free_port()
    (tmp_path / "audit-hmac-key").write_text(secrets.token_hex(32))
    config = hub_config(
        issuer=oidc_ana.issuer,
        port=port,
        policy=ROOT / "examples" / "policy.yaml",
        cluster=kube,
        state=tmp_path,
    )
    config += "c.SovereignAuthenticator.stop_unentitled_servers = True\n"
    config += "c.SovereignAuthenticator.auth_refresh_age = 1\n"
    env = {"KUBECONFIG": str(kube.kubeconfig), "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32)}
    hub = Hub(tmp_path / "hub", config, env=env, port=port)
    try:
        session, page = login_via_provider(hub.url, "ana")
        assert page.status_code == 200
        form = {
            "profile": "cpu-small",
            "region-cpu-small": "eu",
            "_xsrf": session.cookies.get("_xsrf", path="/hub/"),
        }
        assert (
            session.post(
                f"{hub.url}/hub/spawn", data=form, timeout=60, allow_redirects=False
            ).status_code
            == 302
        )
        hub.wait_for_server("ana")
        assert (
            await core.read_namespaced_pod("jupyter-ana", kube.namespace)
        ).status.phase == "Running"

        # The provider moves ana to the US group: her EU server is no longer entitled.
        oidc_ana.set_user({**ANA, "groups": ["us-analysts"]})
        time.sleep(1.5)  # past auth_refresh_age
        assert session.get(f"{hub.url}/hub/home", timeout=30).status_code == 200
        hub.wait_for_server("ana", ready=False, timeout=60)

        async def pod_gone():
            try:
                await core.read_namespaced_pod("jupyter-ana", kube.namespace)
            except ApiException as exc:
                return exc.status == 404
            return False

        await eventually(pod_gone, timeout=60)
        assert "its entitlement was lost" in hub.logs()
        assert sorted(hub.api("GET", "/users/ana").json()["groups"]) == ["us-analysts"]
    finally:
        hub.stop()
    from sovereign_hub.audit.store import read

    stops = [
        r["data"]
        for r in read(str(tmp_path / "audit.sqlite"))
        if r["schema"].endswith("/server-stopped/v2")
    ]
    assert stops
    assert stops[-1]["reason"] == "entitlement_lost"
