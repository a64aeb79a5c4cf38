"""The region's entry point for browsers, in process: what it forwards and what it refuses,
and the hub-facing listener sending a browser's visit there.

The upstream is a real aiohttp server standing in for a notebook pod; the route table is
filled as the pod watch would fill it. The whole flow, with a real hub and the OAuth
dance, is in ``test_gateway_entry_hub.py``.
"""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from sovereign_hub.gateway.entry import make_entry_app
from sovereign_hub.gateway.proxy import make_app
from sovereign_hub.gateway.routes import RouteTable
from tests.test_gateway_proxy import echo, running_pod

PUBLIC = "https://us.hub.example"


@pytest.fixture
async def servers():
    """(entry point, hub-facing listener) over one table with bob's running pod."""
    upstream = web.Application()
    upstream.router.add_route("*", "/{tail:.*}", echo)
    async with TestServer(upstream, host="127.0.0.1") as pod:
        table = RouteTable()
        table.apply("ADDED", running_pod("bob", pod.port))
        async with (
            TestServer(make_entry_app(table, "https://hub.example/"), host="127.0.0.1") as entry,
            TestServer(make_app(table, public_url=PUBLIC + "/"), host="127.0.0.1") as hubside,
        ):
            yield entry, hubside


async def test_the_entry_point_forwards_a_running_servers_path_with_forwarded_headers(servers):
    entry, _ = servers
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{entry.port}/user/bob/lab?x=1",
            headers={"Host": "us.hub.example", "Cookie": "jupyterhub-user-bob=s"},
        ) as response,
    ):
        assert response.status == 200
        seen = await response.json()
    assert seen["path"] == "/user/bob/lab?x=1"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["host"] == "us.hub.example"
    assert headers["cookie"] == "jupyterhub-user-bob=s"  # the server checks its own cookie
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "us.hub.example"
    assert headers["x-forwarded-for"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/user/ana/lab", 404),  # no pod of ana's in this cluster's namespace
        ("/hub/login", 404),  # the hub is not served here
        ("/", 404),
        ("/user/bob/../ana/lab", 400),  # read as ana's by one, bob's by another
        ("/user/bob/%2e%2e/ana/", 400),
    ],
)
async def test_the_entry_point_refuses_what_is_not_a_server_running_here(servers, path, status):
    entry, _ = servers
    async with (
        aiohttp.ClientSession() as session,
        session.get(URL(f"http://127.0.0.1:{entry.port}{path}", encoded=True)) as response,
    ):
        assert response.status == status
        body = await response.json()
    if status == 404:
        assert "https://hub.example" in body["message"]
    # Nothing reached bob's pod: the echo would have answered with its path.
    assert "path" not in body


NAVIGATIONS = (
    {"Sec-Fetch-Mode": "navigate", "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
    {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},  # a browser without Sec-Fetch-*
)
"""The headers of a browser's navigation, with and without Fetch metadata."""


async def test_a_browser_visit_through_the_hub_is_sent_to_the_entry_point(servers):
    _, hubside = servers
    base = f"http://127.0.0.1:{hubside.port}"
    async with aiohttp.ClientSession() as session:
        for navigation in NAVIGATIONS:
            async with session.get(
                f"{base}/user/bob/lab?x=1", headers=navigation, allow_redirects=False
            ) as response:
                assert response.status == 302
                assert response.headers["Location"] == f"{PUBLIC}/user/bob/lab?x=1"
        # A client with a token, or a write, is still served through the hub's proxy.
        async with session.get(
            f"{base}/user/bob/api/status", headers={"Authorization": "token t"}
        ) as response:
            assert response.status == 200
        async with session.post(f"{base}/user/bob/api/kernels", data=b"{}") as response:
            assert response.status == 200
        # No running server: the readiness check still gets 503, not a redirect.
        async with session.get(f"{base}/user/ana/", allow_redirects=False) as response:
            assert response.status == 503


async def test_a_plain_get_through_the_hub_reaches_the_pod_not_a_redirect(servers):
    """JupyterHub's ``wait_for_http_server`` sends a plain GET (no ``Accept: text/html``, no
    ``Sec-Fetch-Mode``) and takes any answer below 500 as "up": it must get the pod's answer,
    or the hub would call a server ready it cannot reach. So must a page's own fetch."""
    from jupyterhub.httpclient import JupyterHubHTTPClient
    from jupyterhub.utils import wait_for_http_server

    _, hubside = servers
    base = f"http://127.0.0.1:{hubside.port}"
    try:
        response = await wait_for_http_server(f"{base}/user/bob/", timeout=10)
    finally:
        await JupyterHubHTTPClient.loop_instance().close()
    assert response.status == 200
    assert response.headers["X-From-Pod"] == "yes"  # the pod's answer, not the gateway's
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{base}/user/bob/api/contents",
            headers={"Sec-Fetch-Mode": "cors", "Accept": "text/html, */*"},
            allow_redirects=False,
        ) as fetched,
    ):
        assert fetched.status == 200  # a script's fetch is not a navigation
