"""The region's entry point end to end: a real JupyterHub and configurable-http-proxy, a
real ``sovereign-gateway`` process with its entry point for browsers, and a browser-like
client (a cookie-keeping HTTP session following redirects) doing JupyterHub's OAuth dance.

No real API server can run here, so both clusters are emulated (sandbox/kube), each with
its own API server, scheduler and process kubelet. The hub is at ``127.0.0.1``, the US
entry point at ``localhost``: two hosts to the client, so their cookies stay apart.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.test_gateway_hub import gateway_hub
from tests.test_spawner_hub import add_users, spawn

if os.environ.get("SOVEREIGN_TEST_KUBECONFIG"):
    pytest.skip(
        "needs two API servers; SOVEREIGN_TEST_KUBECONFIG names one", allow_module_level=True
    )


def _log_in(hub_url: str, user: str) -> requests.Session:
    """A session logged in to the hub as ``user`` through its login form."""
    session = requests.Session()
    session.headers["Accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"  # as a browser
    page = session.get(f"{hub_url}/hub/login", timeout=30)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert xsrf, page.text
    response = session.post(
        f"{hub_url}/hub/login",
        data={"username": user, "password": "x", "_xsrf": xsrf.group(1)},
        timeout=30,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text
    return session


def test_a_us_browser_reaches_its_server_at_the_regional_entry_point_emulated_api_servers(
    make_cluster, tmp_path
):
    with gateway_hub(make_cluster, tmp_path, entry=True) as (hub, gateway, certs, _eu, _us):
        add_users(hub, "eu-researchers", "ana")
        add_users(hub, "us-analysts", "bob")
        for user, region in (("ana", "eu"), ("bob", "us")):
            response = spawn(hub, user, profile="cpu-small", region=region)
            assert response.status_code in (201, 202), response.text
        hub.wait_for_server("ana")
        hub.wait_for_server("bob")
        entry = gateway.public_url
        assert entry is not None
        assert urlsplit(entry).hostname == "localhost"

        browser = _log_in(hub.url, "bob")
        ca = str(certs["entry"]["ca"])  # per request: REQUESTS_CA_BUNDLE beats Session.verify
        # The hub sends bob to /user/bob/ on its own host, as it always does; the gateway
        # redirects him to the region's entry point, where his server starts the OAuth
        # dance with the hub, and calls him back on the regional host.
        lab = browser.get(f"{hub.url}/user/bob/lab", verify=ca, timeout=60)
        assert lab.status_code == 200, (lab.url, lab.text[:500])
        assert lab.url.startswith(f"{entry}/user/bob/lab"), lab.url
        hops = [r.headers["Location"] for r in lab.history]
        assert hops[0] == f"{entry}/user/bob/lab", hops
        authorize = next(h for h in hops if "/hub/api/oauth2/authorize" in h)
        assert authorize.startswith(f"{hub.url}/hub/api/oauth2/authorize"), authorize
        assert parse_qs(urlsplit(authorize).query)["redirect_uri"] == [
            f"{entry}/user/bob/oauth_callback"
        ]
        assert any(h.startswith(f"{entry}/user/bob/oauth_callback?") for h in hops), hops
        # The server's cookie is the regional host's only (cookies are host-scoped).
        domains = {c.domain for c in browser.cookies if c.name.startswith("jupyterhub-user-bob")}
        assert domains == {"localhost.local"} or domains == {"localhost"}, domains

        # JupyterLab's own API answers at the entry point, authenticated by that cookie.
        status = browser.get(f"{entry}/user/bob/api/status", verify=ca, timeout=30)
        assert status.status_code == 200, status.text
        assert "kernels" in status.json()
        # ... and without it the server refuses: the entry point authenticates nobody itself.
        anonymous = requests.get(f"{entry}/user/bob/api/status", verify=ca, timeout=30)
        assert anonymous.status_code == 403, anonymous.text

        # An EU user's path at the US entry point is refused, though her server runs (in
        # the EU cluster), and so is the hub's own path: neither is routed anywhere.
        for path in ("/user/ana/api/status", "/user/ana/lab", "/hub/login"):
            refused = browser.get(f"{entry}{path}", verify=ca, timeout=30, allow_redirects=False)
            assert refused.status_code == 404, (path, refused.status_code, refused.text)
            assert hub.url in refused.json()["message"]
        # Ana's own session is unaffected: her OAuth dance and server stay on the hub's host.
        ana = _log_in(hub.url, "ana")
        page = ana.get(f"{hub.url}/user/ana/lab", timeout=60)
        assert page.status_code == 200
        assert page.url.startswith(f"{hub.url}/user/ana/lab")
        assert ana.get(f"{hub.url}/user/ana/api/status", timeout=30).status_code == 200
