"""The per-region gateway end to end: a real JupyterHub and configurable-http-proxy, a
real ``sovereign-gateway`` process serving mutual TLS, and the US region in a cluster of
its own whose pod network the hub is told not to use.

No real API server can run here, so both clusters are emulated (sandbox/kube),
each with its own API server, scheduler and process kubelet; the gateway learns
where pods are from the US cluster's emulated API server, as it would from a
real one. The proxy reaches the US pod only through the gateway: the policy
gives the region ``cluster.gateway``, so the route's target is the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid

import aiohttp
import pytest
import requests
import yaml

from sovereign_hub.sandbox.gatewayprocess import Gateway
from sovereign_hub.sandbox.hubprocess import CHP, Hub, free_port
from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.sandbox.tls import local_certificates
from tests.conftest import ROOT
from tests.test_gateway_process import notebook_pod
from tests.test_regions_hub import _region_inventory
from tests.test_spawner_hub import add_users, hub_config, spawn

if os.environ.get("SOVEREIGN_TEST_KUBECONFIG"):
    pytest.skip(
        "needs two API servers; SOVEREIGN_TEST_KUBECONFIG names one", allow_module_level=True
    )


@contextlib.contextmanager
def gateway_hub(make_cluster, tmp_path, *, entry: bool = False):
    """(hub, gateway, certificates, eu, us): the EU region on the hub's own cluster, the US
    region in its own cluster behind its gateway; with ``entry``, the gateway also serves
    the region's entry point for browsers, named in the policy (``publicUrl``), and the hub
    knows its own public URL (``JupyterHub.public_url``), as the entry point needs."""
    eu = make_cluster(_region_inventory(tmp_path, "eu-central-1"))
    us = make_cluster(_region_inventory(tmp_path, "us-east-1"))
    certs = {
        name: local_certificates(tmp_path / "tls" / name, common_name=f"{name} CA")
        for name in ("gateway", "hub-client", "rogue", "entry")
    }
    hub_port = free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"
    gateway = Gateway(
        us, certs["gateway"], certs["hub-client"]["ca"], tmp_path / "gateway.log",
        entry_tls=certs["entry"] if entry else None, hub_url=hub_url,
    )  # fmt: skip
    doc = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    doc["regions"]["us"]["cluster"] = {
        "name": "us-east",
        "kubeconfig": str(us.kubeconfig),
        "gateway": {"url": gateway.url},
    }
    if gateway.public_url:
        doc["regions"]["us"]["cluster"]["gateway"]["publicUrl"] = gateway.public_url
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False))
    client = certs["hub-client"]
    config = hub_config(eu, policy) + (
        "from sovereign_hub.gateway.hub import GatewayTLS, configure_hub\n"
        f"configure_hub(c, GatewayTLS(cert={str(client['cert'])!r}, key={str(client['key'])!r}, "
        f"ca={str(certs['gateway']['ca'])!r}), [{str(CHP)!r}])\n"
    )
    if entry:
        config += f"c.JupyterHub.public_url = {hub_url + '/'!r}\n"
    try:
        hub = Hub(tmp_path / "hub", config, env={"KUBECONFIG": str(eu.kubeconfig)}, port=hub_port)
    except BaseException:
        gateway.stop()
        raise
    try:
        yield hub, gateway, certs, eu, us
    finally:
        hub.stop()
        gateway.stop()


@pytest.fixture
def setup(make_cluster, tmp_path):
    """:func:`gateway_hub`, without an entry point."""
    with gateway_hub(make_cluster, tmp_path) as started:
        yield started


def _other_namespace_pod(us: Cluster, user: str) -> None:
    """A notebook pod for ``user`` in another namespace of the US cluster, running."""

    async def create() -> None:
        from kubernetes_asyncio import client

        core = client.CoreV1Api(us._client)
        await core.create_namespace({"metadata": {"name": "elsewhere"}})
        await core.create_namespaced_pod("elsewhere", notebook_pod(user, ["sleep", "600"]))
        for _ in range(120):
            pod = await core.read_namespaced_pod(f"jupyter-{user}", "elsewhere")
            if pod.status.phase == "Running" and pod.status.pod_ip:
                return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"the pod in namespace elsewhere is {pod.status.phase}")

    us.call(create())


async def _kernel_info_through(url: str, token: str) -> dict:
    """Start a kernel on the server at ``url`` (the hub's public URL of a user's server) and
    ask it for its info over the kernel's WebSocket; the reply."""
    headers = {"Authorization": f"token {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{url}api/kernels", json={}) as response:
            assert response.status == 201, await response.text()
            kernel = (await response.json())["id"]
        ws_url = url.replace("http://", "ws://") + f"api/kernels/{kernel}/channels"
        async with session.ws_connect(ws_url) as ws:
            msg_id = uuid.uuid4().hex
            header = {
                "msg_id": msg_id, "username": "", "session": uuid.uuid4().hex,
                "msg_type": "kernel_info_request", "version": "5.3",
            }  # fmt: skip
            request = {
                "header": header, "parent_header": {}, "metadata": {}, "content": {},
                "channel": "shell",
            }  # fmt: skip
            await ws.send_str(json.dumps(request))
            async with asyncio.timeout(120):
                async for message in ws:
                    reply = json.loads(message.data)
                    parent = reply.get("parent_header", {}).get("msg_id")
                    if parent == msg_id and reply["msg_type"] == "kernel_info_reply":
                        return reply
    raise AssertionError("the WebSocket closed before the kernel replied")


def test_us_server_is_reached_through_its_gateway_over_mutual_tls_emulated_api_servers(setup):
    hub, gateway, certs, _eu, us = setup
    add_users(hub, "eu-researchers", "ana")
    add_users(hub, "us-analysts", "bob")
    assert spawn(hub, "ana", profile="cpu-small", region="eu").status_code in (201, 202)
    response = spawn(hub, "bob", profile="cpu-small", region="us")
    assert response.status_code in (201, 202), response.text
    hub.wait_for_server("ana")
    hub.wait_for_server("bob")

    # The hub's proxy targets the gateway for bob, and ana's pod directly (flat, her own).
    routes = hub.api("GET", "/proxy").json()
    assert routes["/user/bob/"]["target"] == gateway.url
    assert routes["/user/ana/"]["target"].startswith("http://127.")

    # hub proxy -> gateway -> pod, over HTTP.
    token = hub.api("POST", "/users/bob/tokens", json={}).json()["token"]
    status = requests.get(
        f"{hub.url}/user/bob/api/status", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert status.status_code == 200, status.text
    assert "kernels" in status.json()

    # ... and over WebSocket: a kernel answers through both proxies.
    reply = asyncio.run(_kernel_info_through(f"{hub.url}/user/bob/", token))
    assert reply["header"]["msg_type"] == "kernel_info_reply"
    assert reply["content"]["status"] == "ok"

    # Straight to the gateway: without a client certificate, or with one the gateway's CA
    # did not sign, the TLS handshake is refused before any HTTP (with TLS 1.3 the client
    # learns it on its first read: an SSL error or a dropped connection), so the gateway
    # never logs, let alone forwards, such a request.
    direct = f"{gateway.url}/user/bob/api/status"
    gateway_ca = str(certs["gateway"]["ca"])
    forwarded = gateway.log_path.read_text().count("GET /user/bob/api/status")
    rogue = certs["rogue"]
    for cert in (None, (str(rogue["cert"]), str(rogue["key"]))):
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(
                direct, verify=gateway_ca, cert=cert, timeout=10,
                headers={"Authorization": f"token {token}"},
            )  # fmt: skip
    time.sleep(1)
    assert gateway.log_path.read_text().count("GET /user/bob/api/status") == forwarded
    hub_cert = (str(certs["hub-client"]["cert"]), str(certs["hub-client"]["key"]))
    allowed = requests.get(
        direct, verify=gateway_ca, cert=hub_cert, timeout=10,
        headers={"Authorization": f"token {token}"},
    )  # fmt: skip
    assert allowed.status_code == 200, allowed.text

    # The gateway reaches only its own cluster's namespace: ana's pod (EU cluster) and a
    # notebook pod in another namespace of the US cluster have no route.
    _other_namespace_pod(us, "eve")
    for user in ("ana", "eve"):
        refused = requests.get(
            f"{gateway.url}/user/{user}/api/status", verify=gateway_ca, cert=hub_cert, timeout=10
        )
        assert refused.status_code == 503, (user, refused.status_code, refused.text)

    # The gateway logged requests, but no token (the Authorization header never, a query
    # never).
    log = gateway.log_path.read_text()
    assert "GET /user/bob/api/status 200" in log
    assert token not in log


def test_a_stopped_server_loses_its_gateway_route_emulated_api_servers(setup):
    hub, gateway, certs, _eu, _us = setup
    add_users(hub, "us-analysts", "bob")
    assert spawn(hub, "bob", profile="cpu-small", region="us").status_code in (201, 202)
    hub.wait_for_server("bob")
    hub_cert = (str(certs["hub-client"]["cert"]), str(certs["hub-client"]["key"]))
    direct = f"{gateway.url}/user/bob/api"
    ca = str(certs["gateway"]["ca"])
    assert requests.get(direct, verify=ca, cert=hub_cert, timeout=10).status_code == 200

    assert hub.api("DELETE", "/users/bob/server").status_code in (202, 204)
    hub.wait_for_server("bob", ready=False)
    deadline = time.monotonic() + 60
    while requests.get(direct, verify=ca, cert=hub_cert, timeout=10).status_code != 503:
        assert time.monotonic() < deadline, "the route outlived the pod"
        time.sleep(0.5)
