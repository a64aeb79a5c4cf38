"""The gateway's route table: which KubeSpawner pod serves which path (pure)."""

from __future__ import annotations

import json
import shutil
import subprocess
from urllib.parse import unquote

import pytest

from sovereign_hub.gateway.routes import (
    AmbiguousPath,
    Route,
    RouteTable,
    route_of,
    routing_path,
    user_prefix,
)
from tests.conftest import missing


def pod(name: str = "jupyter-bob", user: str | None = "bob", **status: object) -> dict:
    annotations = {"hub.jupyter.org/username": user} if user else {}
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "containers": [
                {"name": "notebook", "ports": [{"name": "notebook-port", "containerPort": 8888}]}
            ]
        },
        "status": {"phase": "Running", "podIP": "10.1.2.3", **status},
    }


def test_a_running_pod_routes_its_users_prefix_to_its_ip_and_notebook_port():
    assert route_of(pod()) == Route("/user/bob/", "http://10.1.2.3:8888", "jupyter-bob")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"status": {"phase": "Pending"}}, "not running yet"),
        ({"status": {"phase": "Running"}}, "no IP"),
        ({"metadata": {"name": "x", "deletionTimestamp": "2026-01-01T00:00:00Z",
                       "annotations": {"hub.jupyter.org/username": "bob"}}}, "being deleted"),
        ({"metadata": {"name": "x", "annotations": {}}}, "no user: not KubeSpawner's"),
    ],
)  # fmt: skip
def test_a_pod_gives_no_route_while_there_is_nothing_to_reach(change, why):
    assert route_of({**pod(), **change}) is None, why


@pytest.mark.parametrize(
    ("user", "server", "base", "prefix"),
    [
        ("bob", "", "/", "/user/bob/"),
        ("bob", "gpu", "/", "/user/bob/gpu/"),
        ("a b@x.org", "", "/hub-base/", "/hub-base/user/a%20b@x.org/"),
    ],
)
def test_prefixes_are_escaped_as_jupyterhub_escapes_them(user, server, base, prefix):
    assert user_prefix(base, user, server) == prefix


def test_the_named_port_and_ipv6_addresses_make_the_target():
    p = pod(podIP="fd00::5")
    p["spec"]["containers"][0]["ports"][0]["containerPort"] = 9999
    assert route_of(p).target == "http://[fd00::5]:9999"


@pytest.mark.parametrize(
    ("path", "pod_name"),
    [
        ("/user/bob/api/status", "jupyter-bob"),
        ("/user/bob", "jupyter-bob"),
        ("/user/bob/gpu/lab", "jupyter-bob--gpu"),
        ("/user/bobby/api", None),
        ("/user/eve/api", None),
        ("/hub/api/users", None),
    ],
)
def test_lookup_picks_the_named_server_before_the_users_default(path, pod_name):
    table = RouteTable()
    named = pod("jupyter-bob--gpu", podIP="10.1.2.4")
    named["metadata"]["annotations"]["hub.jupyter.org/servername"] = "gpu"
    table.replace([pod(), named])
    found = table.lookup(path)
    assert (found.pod if found else None) == pod_name


def test_a_deleted_old_pod_does_not_take_the_new_pods_route():
    table = RouteTable()
    table.apply("ADDED", pod("jupyter-bob-old", podIP="10.0.0.1"))
    table.apply("ADDED", pod("jupyter-bob-new", podIP="10.0.0.2"))
    table.apply("DELETED", pod("jupyter-bob-old", podIP="10.0.0.1"))
    assert table.lookup("/user/bob/api").target == "http://10.0.0.2:8888"
    table.apply("MODIFIED", pod("jupyter-bob-new", podIP="10.0.0.2", phase="Succeeded"))
    assert table.lookup("/user/bob/api") is None
    assert len(table) == 0


AMBIGUOUS = [
    "/user/alice/../bob/x",
    "/user/alice/%2e%2e/bob/x",
    "/user/alice/%2E%2e/bob/x",
    "/user/alice/.%2e/bob/x",
    "/user/alice/./x",
    "/user/alice%2F..%2Fbob/x",
    "/user/alice\\..\\bob/x",
    "/user/alice%5C..%5Cbob/x",
    "//evil.example/user/bob/x",
    "/user/alice/%zz",
    "/user/alice/%ff",
]
PLAIN = [
    "/user/bob/api/contents/a%20b",
    "/user/a%20b@x.org/api",
    "/user/a%40x.org/lab",
    "/user/bob/api/contents/dir%2Ffile.ipynb",
    "/user/bob/files/a..b/.hidden",
    "/user/bob/%E2%9C%93",
]


@pytest.mark.parametrize("path", AMBIGUOUS)
def test_paths_whose_owner_depends_on_normalisation_are_refused(path):
    with pytest.raises(AmbiguousPath):
        routing_path(path)


def test_routing_is_by_the_decoded_path_as_chp_routes():
    table = RouteTable()
    table.replace([pod(), pod("jupyter-a-20b-40x-2eorg", user="a b@x.org", podIP="10.1.2.5")])
    assert routing_path("/user/a%20b@x.org/api") == "/user/a b@x.org/api"
    assert table.lookup(routing_path("/user/a%20b%40x.org/api")).pod == "jupyter-a-20b-40x-2eorg"
    assert table.lookup(routing_path("/user/%62ob/api")).pod == "jupyter-bob"
    assert table.lookup(routing_path("/user//bob/api")) is None  # CHP's trie: no match either


def test_the_gateway_decodes_as_configurable_http_proxy_does_with_node():
    """configurable-http-proxy routes on ``decodeURIComponent(new URL(req.url,
    base).pathname)`` (lib/configproxy.js); node's own URL parser gives, for every path the
    gateway accepts, the same path; for every path it refuses, an error, a path other than
    the plainly decoded one (what the pod is sent), or one the pod may normalise again."""
    node = shutil.which("node")
    if node is None:
        missing(
            "node", "apt-get install nodejs", "install Node.js (configurable-http-proxy's runtime)"
        )
    script = (
        "const out = {};"
        "for (const p of JSON.parse(process.argv[1])) {"
        "  try { out[p] = decodeURIComponent(new URL(p, 'http://example.com').pathname); }"
        "  catch (e) { out[p] = null; } }"
        "console.log(JSON.stringify(out));"
    )
    done = subprocess.run(
        [node, "-e", script, json.dumps(PLAIN + AMBIGUOUS)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    chp = json.loads(done.stdout)
    for path in PLAIN:
        assert routing_path(path) == chp[path], path
    for path in AMBIGUOUS:
        # Refused because CHP routes on something other than the decoded raw path the pod
        # is sent, or on a path the pod may still normalise (a .. or \\ left after decoding).
        routed = chp[path]
        assert (
            routed is None or routed != unquote(path) or "\\" in routed or ".." in routed.split("/")
        ), path
