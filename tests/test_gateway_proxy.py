"""The gateway's proxy in process: what it forwards, what it drops, what it answers itself.

The upstream is a real aiohttp server standing in for a notebook pod; the route table is
filled as the pod watch would fill it.
"""

from __future__ import annotations

import os
import shutil
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sovereign_hub.gateway.proxy import TABLE, RenewedFiles, make_app, server_context
from sovereign_hub.gateway.routes import RouteTable
from sovereign_hub.sandbox.tls import local_certificates


def running_pod(user: str, port: int) -> dict:
    return {
        "metadata": {"name": f"jupyter-{user}", "annotations": {"hub.jupyter.org/username": user}},
        "spec": {"containers": [{"ports": [{"name": "notebook-port", "containerPort": port}]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1"},
    }


async def echo(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        ws = web.WebSocketResponse(protocols=("v1.kernel.websocket.jupyter.org",))
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(f"echo {message.data}")
        return ws
    body = await request.read()
    return web.json_response(
        {"path": request.raw_path, "headers": dict(request.headers), "body": body.decode()},
        headers={"X-From-Pod": "yes", "Connection": "keep-alive"},
    )


@pytest.fixture
async def gateway():
    upstream = web.Application()
    upstream.router.add_route("*", "/{tail:.*}", echo)
    async with TestServer(upstream, host="127.0.0.1") as pod:
        table = RouteTable()
        table.apply("ADDED", running_pod("bob", pod.port))
        table.apply("ADDED", running_pod("gone", 1))  # nothing listens on port 1
        async with TestServer(make_app(table), host="127.0.0.1") as server:
            yield server


async def test_requests_reach_the_pod_with_path_query_body_and_end_to_end_headers(gateway):
    url = f"http://127.0.0.1:{gateway.port}/user/bob/api/contents/a%20b?x=1"
    headers = {
        "Host": "hub.example",
        "Cookie": "c=1",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "dropped: Connection names it",
        "Proxy-Authorization": "Basic dropped",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.put(url, data=b"payload", headers=headers) as response,
    ):
        assert response.status == 200
        assert response.headers["X-From-Pod"] == "yes"
        seen = await response.json()
    assert seen["path"] == "/user/bob/api/contents/a%20b?x=1"
    assert seen["body"] == "payload"
    forwarded = {k.lower(): v for k, v in seen["headers"].items()}
    assert forwarded["host"] == "hub.example"  # the notebook server checks Origin against it
    assert forwarded["cookie"] == "c=1"
    assert "x-hop" not in forwarded
    assert "proxy-authorization" not in forwarded


@pytest.mark.parametrize(
    ("path", "status"), [("/user/eve/api", 503), ("/hub/home", 404), ("/user/gone/api", 502)]
)
async def test_the_gateway_answers_for_paths_with_no_pod_or_a_pod_that_does_not_answer(
    gateway, path, status
):
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{gateway.port}{path}") as response,
    ):
        assert response.status == status
        if status == 503:  # a user's path: "not yet", with a clear message and when to retry
            assert response.headers["Retry-After"] == "2"
            assert "no running server" in (await response.json())["message"]


async def test_jupyterhubs_readiness_check_waits_until_the_gateway_routes_the_pod(gateway):
    """JupyterHub's own ``wait_for_http_server`` takes any answer below 500 as "up": while
    the gateway's watch has the pod Pending, the server's URL must not look up."""
    from jupyterhub.httpclient import JupyterHubHTTPClient
    from jupyterhub.utils import wait_for_http_server

    table = gateway.app[TABLE]
    bob = table.lookup("/user/bob/")
    pending = running_pod("carol", int(bob.target.rsplit(":", 1)[1]))
    pending["status"] = {"phase": "Pending"}
    table.apply("ADDED", pending)
    url = f"http://127.0.0.1:{gateway.port}/user/carol/"
    try:
        with pytest.raises(TimeoutError):
            await wait_for_http_server(url, timeout=1.5)
        table.apply("MODIFIED", running_pod("carol", int(bob.target.rsplit(":", 1)[1])))
        response = await wait_for_http_server(url, timeout=5)
        assert response.status == 200
    finally:
        await JupyterHubHTTPClient.loop_instance().close()


async def raw_status(port: int, path: str) -> tuple[int, bytes]:
    """Send ``GET path`` byte for byte (HTTP clients resolve dot segments first, as browsers
    do; a hostile client need not); the status and the body."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: hub.example\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "path",
    [
        "/user/bob/../gone/api",  # CHP routes this to gone's target; a naive split to bob
        "/user/gone/%2e%2e/bob/api",
        "/user/bob%2F..%2Fgone/api",
        "/user/bob/..%5Cgone/api",
    ],
)
async def test_a_path_chp_and_the_pod_could_read_as_different_users_is_refused(gateway, path):
    status, body = await raw_status(gateway.port, path)
    assert status == 400
    assert b"refused" in body


async def test_routing_is_by_the_decoded_path(gateway):
    status, body = await raw_status(gateway.port, "/user/%62ob/api?x=1")
    assert status == 200
    assert b'"path": "/user/bob/api?x=1"' in body  # bob's pod (aiohttp's URL unescapes %62)


async def test_websockets_pass_both_ways_with_the_pods_subprotocol(gateway):
    url = f"ws://127.0.0.1:{gateway.port}/user/bob/api/kernels/k/channels"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=("v1.kernel.websocket.jupyter.org",)) as ws,
    ):
        assert ws.protocol == "v1.kernel.websocket.jupyter.org"
        await ws.send_str("hello")
        assert (await ws.receive_str(timeout=10)) == "echo hello"


async def test_a_renewed_certificate_serves_new_connections_without_a_restart(tmp_path):
    """A pair caught half-way through the swap keeps the old one serving; once the pair is
    whole, new handshakes get it."""
    first = local_certificates(tmp_path / "first", common_name="first gateway CA")
    renewed = local_certificates(tmp_path / "renewed", common_name="renewed gateway CA")
    hub = local_certificates(tmp_path / "hub", common_name="hub client CA")
    live = tmp_path / "live"
    live.mkdir()
    for name in ("cert", "key"):
        shutil.copy(first[name], live / f"{name}.pem")
    cert, key = str(live / "cert.pem"), str(live / "key.pem")
    context = server_context(cert, key, str(hub["ca"]))
    renewal = RenewedFiles(context, cert, key, str(hub["ca"]))
    runner = web.AppRunner(make_app(RouteTable()))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    async def status_trusting(ca: Path) -> int:
        client = ssl.create_default_context(cafile=str(ca))
        client.load_cert_chain(str(hub["cert"]), str(hub["key"]))
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client)) as session,
            session.get(f"https://127.0.0.1:{port}/user/nobody/") as response,
        ):
            return response.status

    try:
        assert await status_trusting(first["ca"]) == 503  # the gateway's own answer
        assert renewal.check() is False  # nothing changed
        for name in ("cert", "key"):  # as a Secret volume does: new files swapped in
            shutil.copy(renewed[name], live / f"{name}.new")
            os.replace(live / f"{name}.new", live / f"{name}.pem")
            if name == "cert":  # caught half-way: the new certificate with the old key
                assert renewal.check() is False
                assert await status_trusting(first["ca"]) == 503  # the old pair still serves
                assert await status_trusting(first["ca"]) == 503
        assert renewal.check() is True
        assert await status_trusting(renewed["ca"]) == 503
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await status_trusting(first["ca"])
    finally:
        await runner.cleanup()


async def test_a_renewed_client_ca_is_added_to_those_trusted_from_the_next_handshake(tmp_path):
    """The new context a renewal builds is handed to each handshake with its CAs: a client
    the new CA signed is admitted, and one the old CA signed still is (trust only grows)."""
    from tests.test_gateway_clients import CA

    server = local_certificates(tmp_path / "server", common_name="gateway CA")
    old, new = CA(tmp_path / "old", "old client CA"), CA(tmp_path / "new", "new client CA")
    client_ca = tmp_path / "client-ca.pem"
    shutil.copy(old.path, client_ca)
    context = server_context(str(server["cert"]), str(server["key"]), str(client_ca))
    renewal = RenewedFiles(context, str(server["cert"]), str(server["key"]), str(client_ca))
    runner = web.AppRunner(make_app(RouteTable()))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    async def status_of(pair: tuple[str, str]) -> int:
        client = ssl.create_default_context(cafile=str(server["ca"]))
        client.load_cert_chain(*pair)
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client)) as session,
            session.get(f"https://127.0.0.1:{port}/user/nobody/") as response,
        ):
            return response.status

    by_old, by_new = old.leaf("old", cn="hub-proxy"), new.leaf("new", cn="hub-proxy")
    try:
        assert await status_of(by_old) == 503  # admitted: no such server yet
        with pytest.raises(aiohttp.ClientError):  # refused in the handshake
            await status_of(by_new)
        shutil.copy(new.path, tmp_path / "client-ca.new")
        os.replace(tmp_path / "client-ca.new", client_ca)
        assert renewal.check() is True
        assert await status_of(by_new) == 503
        assert await status_of(by_old) == 503
    finally:
        await runner.cleanup()
