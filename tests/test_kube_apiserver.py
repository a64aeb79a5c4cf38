"""The emulated API server's semantics, as a Kubernetes client sees them.

These exercise the emulator alone (no scheduler or kubelet) through
kubernetes_asyncio, to the behaviour of a real API server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial

import aiohttp
import pytest
from aiohttp import web
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.watch import Watch

from sovereign_hub.sandbox.kube.apiserver import ApiServer
from sovereign_hub.sandbox.kube.cluster import write_kubeconfig
from sovereign_hub.sandbox.kube.store import Store
from sovereign_hub.sandbox.kube.tables import human_duration

IMAGE = "registry.example/nb@sha256:" + "a" * 64


class Emulator:
    def __init__(self, server: ApiServer, url: str, core: client.CoreV1Api) -> None:
        self.server, self.url, self.core = server, url, core


@pytest.fixture
async def emulator(tmp_path, request) -> AsyncIterator[Emulator]:
    history = getattr(request, "param", 10_000)
    server = ApiServer(Store(history=history), token="t0ken", bookmark_interval=0.2)
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    path = write_kubeconfig(tmp_path / "kubeconfig", url, "t0ken", "default")
    api = await config.new_client_from_config(config_file=str(path))
    try:
        yield Emulator(server, url, client.CoreV1Api(api))
    finally:
        await api.close()
        await runner.cleanup()


def pod_body(name: str, **labels: str) -> dict:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "notebook", "image": IMAGE}]},
    }


async def raw(core: client.CoreV1Api, method, *args, **kwargs) -> dict:
    response = await method(*args, _preload_content=False, **kwargs)
    return json.loads(await response.read())


async def test_create_sets_server_fields_and_defaults(emulator):
    pod = await raw(emulator.core, emulator.core.create_namespaced_pod, "default", pod_body("p1"))
    meta = pod["metadata"]
    assert meta["namespace"] == "default"
    assert meta["uid"]
    assert meta["creationTimestamp"]
    assert int(meta["resourceVersion"]) > 0
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert pod["spec"]["schedulerName"] == "default-scheduler"
    assert pod["spec"]["restartPolicy"] == "Always"
    assert {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    } in pod["spec"]["tolerations"]
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"


async def test_generate_name(emulator):
    body = {"metadata": {"generateName": "jupyter-"}, "spec": pod_body("x")["spec"]}
    pod = await raw(emulator.core, emulator.core.create_namespaced_pod, "default", body)
    assert pod["metadata"]["name"].startswith("jupyter-")
    assert len(pod["metadata"]["name"]) == 13


@pytest.mark.parametrize(
    ("call", "status", "reason"),
    [
        (lambda c: c.read_namespaced_pod("nope", "default"), 404, "NotFound"),
        (lambda c: c.create_namespaced_pod("missing-ns", pod_body("p")), 404, "NotFound"),
        (lambda c: c.create_namespaced_pod("default", pod_body("Bad_Name")), 422, "Invalid"),
        (
            lambda c: c.create_namespaced_pod(
                "default", {"metadata": {"name": "p"}, "spec": {"containers": []}}
            ),
            422,
            "Invalid",
        ),
        (lambda c: c.list_namespaced_pod("default", label_selector="a in (b"), 400, "BadRequest"),
    ],
)
async def test_errors_are_status_objects(emulator, call, status, reason):
    with pytest.raises(ApiException) as info:
        await call(emulator.core)
    body = json.loads(info.value.body)
    assert info.value.status == status
    assert (body["kind"], body["status"], body["reason"], body["code"]) == (
        "Status",
        "Failure",
        reason,
        status,
    )


async def test_invalid_name_names_the_field_like_apimachinery(emulator):
    with pytest.raises(ApiException) as info:
        await emulator.core.create_namespaced_pod("default", pod_body("Bad_Name"))
    body = json.loads(info.value.body)
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    assert body["message"].startswith(
        'Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'
    )


async def test_duplicate_create_is_409_already_exists(emulator):
    await emulator.core.create_namespaced_pod("default", pod_body("p"))
    with pytest.raises(ApiException) as info:
        await emulator.core.create_namespaced_pod("default", pod_body("p"))
    assert info.value.status == 409
    assert json.loads(info.value.body)["reason"] == "AlreadyExists"


async def test_unauthenticated_requests_are_refused(emulator):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{emulator.url}/api/v1/namespaces/default/pods") as r:
            assert r.status == 401
        async with session.get(f"{emulator.url}/healthz") as r:
            assert r.status == 200


async def test_discovery_reports_core_v1_with_subresources(emulator):
    headers = {"Authorization": "Bearer t0ken"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{emulator.url}/api/v1") as r,
    ):
        body = await r.json()
    names = {r["name"] for r in body["resources"]}
    assert body["groupVersion"] == "v1"
    assert {
        "pods",
        "pods/status",
        "pods/binding",
        "pods/log",
        "nodes",
        "events",
        "persistentvolumeclaims",
    } <= names


async def test_the_coordination_group_serves_leases(emulator):
    """Leases live in the coordination.k8s.io/v1 group, discovered and served under /apis,
    and never under the core /api/v1."""
    headers = {"Authorization": "Bearer t0ken"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{emulator.url}/apis") as r:
            groups = (await r.json())["groups"]
        async with session.get(f"{emulator.url}/apis/coordination.k8s.io/v1") as r:
            resources = await r.json()
        async with session.get(f"{emulator.url}/api/v1/namespaces/default/leases") as r:
            core_status = r.status
        async with session.get(f"{emulator.url}/apis/coordination.k8s.io/v1/pods") as r:
            misplaced_status = r.status
    assert [g["preferredVersion"]["groupVersion"] for g in groups] == [
        "apps/v1",
        "batch/v1",
        "coordination.k8s.io/v1",
        "networking.k8s.io/v1",
        "policy/v1",
        "rbac.authorization.k8s.io/v1",
        "scheduling.k8s.io/v1",
    ]
    assert resources["groupVersion"] == "coordination.k8s.io/v1"
    assert [(r["name"], r["kind"], r["namespaced"]) for r in resources["resources"]] == [
        ("leases", "Lease", True)
    ]
    assert (core_status, misplaced_status) == (404, 404)

    leases = client.CoordinationV1Api(emulator.core.api_client)
    body = {
        "metadata": {"name": "node-a"},
        "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40},
    }
    created = await leases.create_namespaced_lease("kube-node-lease", body)
    assert created.spec.holder_identity == "node-a"
    listed = await raw(emulator.core, leases.list_namespaced_lease, "kube-node-lease")
    assert (listed["kind"], listed["apiVersion"]) == ("LeaseList", "coordination.k8s.io/v1")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["node-a"]
    stale = created
    await leases.patch_namespaced_lease(
        "node-a", "kube-node-lease", {"spec": {"leaseTransitions": 1}}
    )
    with pytest.raises(ApiException) as info:
        await leases.replace_namespaced_lease("node-a", "kube-node-lease", stale)
    assert info.value.status == 409
    body["metadata"]["name"] = "node-b"
    body["spec"]["leaseDurationSeconds"] = 0
    with pytest.raises(ApiException) as info:
        await leases.create_namespaced_lease("kube-node-lease", body)
    assert info.value.status == 422
    assert (
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
        in (json.loads(info.value.body)["message"])
    )


@pytest.mark.parametrize(
    ("port", "message"),
    [
        ({"protocol": "ICMP", "port": 80},
         'spec.egress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: '
         '"SCTP", "TCP", "UDP"'),
        ({"port": 9000, "endPort": 8000},
         "spec.egress[0].ports[0].endPort: Invalid value: 8000: must be greater than or "
         "equal to `port`"),
        ({"port": "http", "endPort": 8000},
         "spec.egress[0].ports[0].endPort: Invalid value: 8000: may not be specified when "
         "`port` is non-numeric"),
    ],
)  # fmt: skip
async def test_network_policies_are_served_and_a_wrong_port_is_refused(emulator, port, message):
    """networking.k8s.io/v1 NetworkPolicies (the pod network enforces them, kube/podnet.py)."""
    networking = client.NetworkingV1Api(emulator.core.api_client)
    body = {"metadata": {"name": "p"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    created = await networking.create_namespaced_network_policy("default", body)
    assert created.spec.policy_types == ["Egress"]
    bad = {
        "metadata": {"name": "bad"},
        "spec": {"podSelector": {}, "egress": [{"ports": [port]}], "policyTypes": ["Egress"]},
    }
    with pytest.raises(ApiException) as info:
        await networking.create_namespaced_network_policy("default", bad)
    assert info.value.status == 422
    assert message in json.loads(info.value.body)["message"]


async def test_a_streaming_list_ends_its_initial_events_with_a_bookmark(emulator):
    """sendInitialEvents (KEP-3157), as client-go's watch-list and so kubectl wait use it: the
    current state as ADDED events, a BOOKMARK annotated k8s.io/initial-events-end at that
    state's version, then changes."""
    core = emulator.core
    for name in ("a", "b"):
        await core.create_namespaced_config_map("default", {"metadata": {"name": name}})
    headers = {"Authorization": "Bearer t0ken"}
    query = (
        "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        "&allowWatchBookmarks=true&timeoutSeconds=2"
    )
    events = []
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{emulator.url}/api/v1/namespaces/default/configmaps?{query}") as r,
    ):
        async for line in r.content:
            event = json.loads(line)
            events.append(event)
            if event["type"] == "BOOKMARK" and len(events) == 3:
                await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
            if len(events) == 4:
                break
    kinds = [(e["type"], e["object"]["metadata"].get("name")) for e in events]
    assert kinds == [("ADDED", "a"), ("ADDED", "b"), ("BOOKMARK", None), ("ADDED", "c")]
    end = events[2]["object"]["metadata"]
    assert end["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(end["resourceVersion"]) < int(events[3]["object"]["metadata"]["resourceVersion"])
    # Without NotOlderThan and bookmarks the request is refused, as apimachinery refuses it.
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(f"{emulator.url}/api/v1/pods?watch=1&sendInitialEvents=true") as r,
    ):
        assert r.status == 422
        body = await r.json()
    fields = {c["field"] for c in body["details"]["causes"]}
    assert fields == {"resourceVersionMatch", "allowWatchBookmarks"}


KUBECTL_ACCEPT = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


async def test_tables_for_kubectl_get(emulator):
    """kubectl get asks for a meta.k8s.io Table and prints its cells; the emulator renders
    what kube-apiserver's printers render for pods (a crash-looping container, a pod being
    deleted) and its default columns for other resources."""
    core = emulator.core
    await core.create_namespaced_pod("default", pod_body("crashing"))
    await core.patch_namespaced_pod_status(
        "crashing",
        "default",
        {"status": {"phase": "Running", "containerStatuses": [{
            "name": "notebook", "ready": False, "restartCount": 4, "image": IMAGE, "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}},
    )  # fmt: skip
    await core.create_namespaced_config_map("default", {"metadata": {"name": "settings"}})
    now = datetime.now(UTC)
    await core.create_namespaced_event("default", {
        "metadata": {"name": "crashing.1"}, "type": "Warning", "reason": "BackOff",
        "message": "Back-off restarting failed container ", "count": 4,
        "involvedObject": {"kind": "Pod", "name": "crashing", "namespace": "default"},
        "source": {"component": "kubelet", "host": "eu-cpu-1"},
        "lastTimestamp": (now - timedelta(seconds=90)).isoformat(),  # with fractions
        "firstTimestamp": (now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")})  # fmt: skip
    headers = {"Authorization": "Bearer t0ken", "Accept": KUBECTL_ACCEPT}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{emulator.url}/api/v1/namespaces/default/events") as r:
            events = await r.json()
        async with session.get(f"{emulator.url}/api/v1/namespaces/default/pods") as r:
            pods = await r.json()
        async with session.get(f"{emulator.url}/api/v1/namespaces/default/configmaps/settings"
                               "?includeObject=None") as r:  # fmt: skip
            maps = await r.json()
        async with session.get(f"{emulator.url}/api/v1") as r:
            short = {x["name"]: x.get("shortNames") for x in (await r.json())["resources"]}
    assert (pods["kind"], pods["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert [c["name"] for c in pods["columnDefinitions"]][:5] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    (row,) = pods["rows"]
    assert row["cells"][:4] == ["crashing", "0/1", "CrashLoopBackOff", "4"]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "crashing"
    (event,) = events["rows"]
    assert event["cells"][1:] == [
        "Warning", "BackOff", "pod/crashing", "", "kubelet, eu-cpu-1",
        "Back-off restarting failed container", event["cells"][7], 4, "crashing.1",
    ]  # fmt: skip
    assert event["cells"][0] in {f"{n}s" for n in range(90, 100)}  # 90 s ago, give or take
    assert event["cells"][7] == "3h"
    assert [c["name"] for c in maps["columnDefinitions"]] == ["Name", "Created At"]
    assert maps["rows"][0]["cells"][0] == "settings"
    assert "object" not in maps["rows"][0]
    assert (short["pods"], short["persistentvolumeclaims"], short["secrets"]) == (
        ["po"],
        ["pvc"],
        None,
    )


async def test_a_watch_for_kubectl_get_w_sends_one_row_tables(emulator):
    """kubectl get -w watches with the Table media type: each event is a one-row Table, and
    only the first carries the column definitions."""
    core = emulator.core
    await core.create_namespaced_pod("default", pod_body("first"))
    headers = {"Authorization": "Bearer t0ken", "Accept": KUBECTL_ACCEPT}
    url = f"{emulator.url}/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=2"
    events = []
    async with aiohttp.ClientSession(headers=headers) as session, session.get(url) as r:
        async for line in r.content:
            events.append(json.loads(line))
            if len(events) == 1:
                await core.create_namespaced_pod("default", pod_body("second"))
            if len(events) == 2:
                break
    assert [e["type"] for e in events] == ["ADDED", "ADDED"]
    assert [e["object"]["kind"] for e in events] == ["Table", "Table"]
    assert [len(e["object"]["columnDefinitions"]) > 0 for e in events] == [True, False]
    assert [e["object"]["rows"][0]["cells"][:3] for e in events] == [
        ["first", "0/1", "Pending"],
        ["second", "0/1", "Pending"],
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (200, "3m20s"),
     (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 300, "3h5m"),
     (8 * 3600, "8h"), (47 * 3600, "47h"), (50 * 3600, "2d2h"), (8 * 86400, "8d"),
     (800 * 86400, "2y70d"), (3000 * 86400, "8y")],
)  # fmt: skip
def test_ages_are_written_as_apimachinery_writes_them(seconds, text):
    assert human_duration(seconds) == text


async def test_list_with_label_and_field_selectors_and_paging(emulator):
    core = emulator.core
    for i in range(5):
        await core.create_namespaced_pod(
            "default", pod_body(f"p{i}", app="jupyterhub", tier="user" if i % 2 else "core")
        )
    users = await core.list_namespaced_pod(
        "default", label_selector="app=jupyterhub,tier in (user)"
    )
    assert [p.metadata.name for p in users.items] == ["p1", "p3"]
    named = await core.list_namespaced_pod("default", field_selector="metadata.name=p4")
    assert [p.metadata.name for p in named.items] == ["p4"]
    first = await core.list_namespaced_pod("default", limit=2)
    assert [p.metadata.name for p in first.items] == ["p0", "p1"]
    rest = await core.list_namespaced_pod("default", limit=10, _continue=first.metadata._continue)
    assert [p.metadata.name for p in rest.items] == ["p2", "p3", "p4"]


async def collect(core, rv: str, count: int, **selectors) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    watch = Watch()
    async with watch.stream(
        partial(core.list_namespaced_pod, _preload_content=False),
        namespace="default",
        resource_version=rv,
        timeout_seconds=5,
        **selectors,
    ) as stream:
        async for event in stream:
            events.append((event["type"], event["raw_object"]["metadata"]["name"]))
            if len(events) == count:
                break
    return events


async def test_watch_resumes_from_list_resource_version(emulator):
    core = emulator.core
    await core.create_namespaced_pod("default", pod_body("before"))
    listed = await core.list_namespaced_pod("default")
    rv = listed.metadata.resource_version
    await core.create_namespaced_pod("default", pod_body("after"))
    await core.patch_namespaced_pod("before", "default", {"metadata": {"labels": {"x": "y"}}})
    await core.delete_namespaced_pod("after", "default")
    # Nothing before the listed version is replayed; everything after is, in order.
    assert await collect(core, rv, 3) == [
        ("ADDED", "after"),
        ("MODIFIED", "before"),
        ("DELETED", "after"),
    ]


async def test_filtered_watch_sends_deleted_when_an_object_stops_matching(emulator):
    core = emulator.core
    await core.create_namespaced_pod("default", pod_body("p", role="user"))
    rv = (await core.list_namespaced_pod("default")).metadata.resource_version
    await core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"role": "admin"}}})
    await core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"role": "user"}}})
    assert await collect(core, rv, 2, label_selector="role=user") == [
        ("DELETED", "p"),
        ("ADDED", "p"),
    ]


async def test_watch_from_zero_starts_with_current_state(emulator):
    await emulator.core.create_namespaced_pod("default", pod_body("p"))
    assert await collect(emulator.core, "0", 1) == [("ADDED", "p")]


@pytest.mark.parametrize("emulator", [3], indirect=True)
async def test_watch_from_a_compacted_version_is_410_expired(emulator):
    core = emulator.core
    rv = (await core.list_namespaced_pod("default")).metadata.resource_version
    for i in range(6):
        await core.create_namespaced_pod("default", pod_body(f"p{i}"))
    with pytest.raises(ApiException) as info:
        await collect(core, rv, 1)
    assert info.value.status == 410


async def test_watch_sends_bookmarks_when_asked(emulator):
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t0ken"}) as session:
        url = f"{emulator.url}/api/v1/namespaces/default/pods?watch=1&allowWatchBookmarks=true&resourceVersion=1"
        async with session.get(url) as r:
            line = await asyncio.wait_for(r.content.readline(), 5)
    event = json.loads(line)
    assert event["type"] == "BOOKMARK"
    assert event["object"]["metadata"]["resourceVersion"]


async def test_a_client_leaving_during_the_backlog_ends_its_watch_quietly(emulator, caplog):
    """A real API server ends a watch whose client has gone without logging an error,
    whether the client leaves during the stream or while the backlog is being sent."""
    # Enough backlog (about 4 MB) that sending it waits on the client.
    padding = "x" * 2000
    for i in range(2000):
        body = pod_body(f"p{i}")
        body["metadata"].update(namespace="default", annotations={"pad": padding})
        emulator.server.store.create("pods", body)
    store = emulator.server.store
    before = len(store.watchers)
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t0ken"}) as session:
        url = f"{emulator.url}/api/v1/namespaces/default/pods?watch=1&resourceVersion=0"
        async with session.get(url) as r:
            first = json.loads(await asyncio.wait_for(r.content.readline(), 5))
            assert first["type"] == "ADDED"
            assert len(store.watchers) == before + 1
            r.connection.transport.abort()
    async with asyncio.timeout(5):
        while len(store.watchers) > before:
            await asyncio.sleep(0.05)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_replace_with_stale_resource_version_is_409_conflict(emulator):
    core = emulator.core
    cm = await core.create_namespaced_config_map(
        "default", {"metadata": {"name": "c"}, "data": {"k": "1"}}
    )
    await core.patch_namespaced_config_map("c", "default", {"data": {"k": "2"}})
    cm.data = {"k": "3"}
    with pytest.raises(ApiException) as info:
        await core.replace_namespaced_config_map("c", "default", cm)
    assert info.value.status == 409
    assert "the object has been modified" in json.loads(info.value.body)["message"]


async def test_patch_types(emulator):
    core = emulator.core
    await core.create_namespaced_config_map(
        "default", {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}
    )
    await core.patch_namespaced_config_map(
        "c",
        "default",
        {"data": {"a": None, "c": "3"}},
        _content_type="application/merge-patch+json",
    )
    await core.patch_namespaced_config_map(
        "c", "default", [{"op": "replace", "path": "/data/b", "value": "20"}]
    )
    cm = await core.read_namespaced_config_map("c", "default")
    assert cm.data == {"b": "20", "c": "3"}


async def test_pod_spec_is_immutable_but_image_is_not(emulator):
    core = emulator.core
    await core.create_namespaced_pod("default", pod_body("p"))
    with pytest.raises(ApiException) as info:
        await core.patch_namespaced_pod("p", "default", {"spec": {"nodeSelector": {"a": "b"}}})
    assert info.value.status == 422
    assert "pod updates may not change fields" in json.loads(info.value.body)["message"]
    patch = {
        "spec": {
            "containers": [{"name": "notebook", "image": "registry.example/nb@sha256:" + "b" * 64}]
        }
    }
    pod = await core.patch_namespaced_pod("p", "default", patch)
    assert pod.spec.containers[0].image.endswith("b" * 64)


async def test_status_is_only_written_through_its_subresource(emulator):
    core = emulator.core
    await core.create_namespaced_pod("default", pod_body("p"))
    await core.patch_namespaced_pod(
        "p", "default", {"metadata": {"labels": {"a": "b"}}, "status": {"phase": "Running"}}
    )
    assert (await core.read_namespaced_pod("p", "default")).status.phase == "Pending"
    await core.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Running"}})
    assert (await core.read_namespaced_pod("p", "default")).status.phase == "Running"


async def test_binding_assigns_once(emulator):
    core = emulator.core
    await core.create_namespaced_pod("default", pod_body("p"))
    binding = {"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}}
    await core.create_namespaced_pod_binding("p", "default", binding, _preload_content=False)
    pod = await core.read_namespaced_pod("p", "default")
    assert pod.spec.node_name == "n1"
    assert any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions)
    again = await core.create_namespaced_pod_binding(
        "p", "default", binding, _preload_content=False
    )
    assert again.status == 409
    assert "is already assigned to node" in (await again.json())["message"]


async def test_graceful_deletion_of_a_bound_pod_waits_for_the_kubelet(emulator):
    core = emulator.core
    await core.create_namespaced_pod("default", pod_body("p"))
    await core.create_namespaced_pod_binding(
        "p",
        "default",
        {"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}},
        _preload_content=False,
    )
    await core.delete_namespaced_pod("p", "default", grace_period_seconds=30)
    pod = await core.read_namespaced_pod("p", "default")
    assert pod.metadata.deletion_timestamp is not None
    assert pod.metadata.deletion_grace_period_seconds == 30
    # The kubelet's confirmation (grace 0) removes it.
    await core.delete_namespaced_pod("p", "default", grace_period_seconds=0)
    with pytest.raises(ApiException) as info:
        await core.read_namespaced_pod("p", "default")
    assert info.value.status == 404


async def test_unbound_pod_is_deleted_at_once(emulator):
    await emulator.core.create_namespaced_pod("default", pod_body("p"))
    await emulator.core.delete_namespaced_pod("p", "default")
    assert (await emulator.core.list_namespaced_pod("default")).items == []


async def test_finalizers_hold_deletion_until_removed(emulator):
    core = emulator.core
    await core.create_namespaced_config_map(
        "default", {"metadata": {"name": "c", "finalizers": ["example.com/hold"]}}
    )
    await core.delete_namespaced_config_map("c", "default")
    held = await core.read_namespaced_config_map("c", "default")
    assert held.metadata.deletion_timestamp is not None
    await core.patch_namespaced_config_map(
        "c",
        "default",
        {"metadata": {"finalizers": None}},
        _content_type="application/merge-patch+json",
    )
    with pytest.raises(ApiException):
        await core.read_namespaced_config_map("c", "default")


async def test_deleting_a_namespace_deletes_its_content(emulator):
    core = emulator.core
    await core.create_namespace({"metadata": {"name": "team"}})
    await core.create_namespaced_config_map("team", {"metadata": {"name": "c"}})
    await core.delete_namespace("team")
    with pytest.raises(ApiException) as info:
        await core.create_namespaced_config_map("team", {"metadata": {"name": "d"}})
    assert info.value.status == 403

    async def gone():
        names = [n.metadata.name for n in (await core.list_namespace()).items]
        return "team" not in names

    for _ in range(50):
        if await gone():
            break
        await asyncio.sleep(0.1)
    assert await gone()
    assert (await core.list_namespaced_config_map("team")).items == []


async def test_secret_string_data_is_stored_base64(emulator):
    secret = await emulator.core.create_namespaced_secret(
        "default", {"metadata": {"name": "s"}, "stringData": {"k": "v"}}
    )
    assert secret.data == {"k": "dg=="}
    assert secret.type == "Opaque"


def workload(name: str, *, selector: dict | None = None, **template_labels: str) -> dict:
    labels = template_labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels} if selector is None else selector,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": IMAGE}]},
            },
        },
    }


async def send(emulator, method: str, path: str, body=None, **kwargs) -> tuple[int, dict, list]:
    headers = {"Authorization": "Bearer t0ken", **kwargs.pop("headers", {})}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.request(method, f"{emulator.url}{path}", json=body, **kwargs) as r,
    ):
        return r.status, await r.json(), r.headers.getall("Warning", [])


DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


@pytest.mark.parametrize(
    ("validation", "status", "warnings"),
    [
        ("Strict", 400, []),
        ("Warn", 201, ['299 - "unknown field \\"spec.template.spec.containers[0].colour\\""']),
        ("Ignore", 201, []),
        (None, 201, ['299 - "unknown field \\"spec.template.spec.containers[0].colour\\""']),
    ],
)
async def test_unknown_fields_follow_field_validation(emulator, validation, status, warnings):
    """An unknown field is refused under Strict (what kubectl and Helm 4 ask for), dropped with
    a warning under Warn (the default) and dropped silently under Ignore."""
    body = workload("web")
    body["spec"]["template"]["spec"]["containers"][0]["colour"] = "red"
    query = {"fieldValidation": validation} if validation else {}
    code, answer, sent = await send(emulator, "POST", DEPLOYMENTS, body, params=query)
    assert code == status, answer
    assert sent == warnings
    if status == 400:
        assert answer["reason"] == "BadRequest"
        assert answer["message"] == (
            'Deployment in version "v1" cannot be handled as a Deployment: strict decoding '
            'error: unknown field "spec.template.spec.containers[0].colour"'
        )
    else:
        assert "colour" not in answer["spec"]["template"]["spec"]["containers"][0]
        assert answer["spec"]["replicas"] == 1  # defaulted, as a real server does
        assert answer["metadata"]["generation"] == 1


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (workload("web", selector={"matchLabels": {"app": "other"}}),
         "spec.template.metadata.labels", "`selector` does not match template `labels`"),
        (workload("web", selector={}), "spec.selector", "empty selector is invalid"),
    ],
    ids=["mismatch", "empty"],
)  # fmt: skip
async def test_a_deployment_whose_selector_misses_its_template_is_422(emulator, body, field, words):
    code, answer, _ = await send(emulator, "POST", DEPLOYMENTS, body)
    assert code == 422
    (cause,) = answer["details"]["causes"]
    assert cause["field"] == field
    assert words in cause["message"]


async def test_immutable_workload_and_binding_fields_are_refused_on_update(emulator):
    await send(emulator, "POST", DEPLOYMENTS, workload("web"))
    patch = {"spec": {"selector": {"matchLabels": {"app": "web", "tier": "x"}}}}
    code, answer, _ = await send(emulator, "PATCH", f"{DEPLOYMENTS}/web", patch,
                                 headers={"Content-Type": "application/merge-patch+json"})  # fmt: skip
    assert code == 422
    assert "field is immutable" in answer["message"]
    bindings = "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings"
    binding = {"metadata": {"name": "b"}, "subjects": [{"kind": "User", "name": "ana"}],
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}}  # fmt: skip
    assert (await send(emulator, "POST", bindings, binding))[0] == 201
    binding["roleRef"]["name"] = "other"
    code, answer, _ = await send(emulator, "PUT", f"{bindings}/b", binding)
    assert code == 422
    assert "cannot change roleRef" in answer["message"]


async def test_cluster_scoped_rbac_is_not_served_under_a_namespace(emulator):
    role = {"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["pods"],
                                                  "verbs": ["get"]}]}  # fmt: skip
    base = "/apis/rbac.authorization.k8s.io/v1"
    assert (await send(emulator, "POST", f"{base}/namespaces/default/clusterroles", role))[0] == 404
    code, stored, _ = await send(emulator, "POST", f"{base}/clusterroles", role)
    assert code == 201
    assert "namespace" not in stored["metadata"]
    role["rules"][0]["verbs"] = []
    role["metadata"]["name"] = "r2"
    code, answer, _ = await send(emulator, "POST", f"{base}/clusterroles", role)
    assert code == 422
    assert answer["details"]["causes"][0]["field"] == "rules[0].verbs"


async def test_openapi_v3_tells_clients_the_server_validates_fields(emulator):
    """client-go asks each kind's PATCH operation for the fieldValidation parameter
    (QueryParamVerifierV3); finding it, kubectl and Helm leave unknown fields to the server."""
    code, index, _ = await send(emulator, "GET", "/openapi/v3")
    assert code == 200
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    code, doc, _ = await send(emulator, "GET", url)
    assert doc["openapi"].startswith("3.0")
    item = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert item["x-kubernetes-group-version-kind"] == {
        "group": "apps", "version": "v1", "kind": "Deployment"}  # fmt: skip
    assert "fieldValidation" in [p["name"] for p in item["parameters"]]
    schema = doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]
    assert schema["properties"]["template"]["$ref"].startswith("#/components/schemas/")
    assert (await send(emulator, "GET", "/openapi/v3/apis/example.com/v1"))[0] == 404


async def test_a_protobuf_body_of_a_kind_the_emulator_cannot_read_is_415(emulator):
    headers = {
        "Authorization": "Bearer t0ken",
        "Content-Type": "application/vnd.kubernetes.protobuf",
    }
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(f"{emulator.url}/api/v1/namespaces/default/pods", data=b"k8s\x00\x0a\x09\x0a\x02v1\x12\x03Pod") as r,
    ):  # fmt: skip
        body = await r.json()
    assert r.status == 415
    assert "not v1 Pod" in body["message"]


@pytest.mark.parametrize("validation", ["Strict", "Ignore"])
async def test_a_value_of_the_wrong_type_is_400_whatever_the_field_validation(emulator, validation):
    """An unquoted env value (a classic chart bug) is refused as the server's JSON decoder
    refuses it, even under Ignore."""
    body = workload("web")
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "PORT", "value": 8080}]
    code, answer, _ = await send(
        emulator, "POST", DEPLOYMENTS, body, params={"fieldValidation": validation}
    )
    assert code == 400
    assert answer["message"] == (
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal '
        "number into Go struct field EnvVar.spec.template.spec.containers.env.value of type "
        "string"
    )


@pytest.mark.parametrize("value", ["true", "false"])
async def test_force_on_a_non_apply_patch_is_422_as_the_real_server_answers(emulator, value):
    """ValidatePatchOptions forbids force on any non-apply patch, whatever its value; a PUT's
    UpdateOptions has no force, so the real server (and the emulator) ignore it there."""
    await send(emulator, "POST", DEPLOYMENTS, workload("forced"))
    code, answer, _ = await send(
        emulator, "PATCH", f"{DEPLOYMENTS}/forced", {"spec": {"replicas": 2}},
        params={"force": value}, headers={"Content-Type": "application/merge-patch+json"},
    )  # fmt: skip
    assert code == 422
    assert answer["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for '
        "non-apply patch"
    )
    assert (await send(emulator, "GET", f"{DEPLOYMENTS}/forced"))[1]["spec"].get("replicas") != 2


async def apply_yaml(emulator, path: str, text: str, **params: str) -> tuple[int, dict, list]:
    return await send(
        emulator, "PATCH", path, data=text.encode(), params={"fieldManager": "me", **params},
        headers={"Content-Type": "application/apply-patch+yaml"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("head", "gvk"),
    [("", "/, Kind="), ("apiVersion: v1\n", "/v1, Kind="), ("kind: ConfigMap\n", "/, Kind=ConfigMap"),
     ("apiVersion: apps/v1\nkind: ConfigMap\n", "apps/v1, Kind=ConfigMap")],
    ids=["neither", "no-kind", "no-apiVersion", "wrong-group"],
)  # fmt: skip
async def test_an_apply_must_name_its_apiversion_and_kind(emulator, head, gvk):
    """The real field manager's version check refuses an apply whose type is not exactly
    the URL's (400), where a create or update takes the type from the URL."""
    path = "/api/v1/namespaces/default/configmaps/typed"
    code, answer, _ = await apply_yaml(emulator, path, head + "data: {a: b}\n")
    assert (code, answer["message"]) == (400, f"invalid object type: {gvk}")
    assert (await send(emulator, "GET", path))[0] == 404
    code, _, _ = await apply_yaml(emulator, path, "apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n")
    assert code == 201


@pytest.mark.parametrize(("value", "forced"), [("1", True), ("", True), ("False", False)])
async def test_an_apply_reads_force_as_a_query_bool(emulator, value, forced):
    """apimachinery's query bool: only "0" and "false" (any case) are false."""
    path = "/api/v1/namespaces/default/configmaps/owned"
    code, _, _ = await apply_yaml(emulator, path, "apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n")
    assert code == 201
    code, _, _ = await send(
        emulator, "PATCH", path, data=b"apiVersion: v1\nkind: ConfigMap\ndata: {a: c}\n",
        params={"fieldManager": "other", "force": value},
        headers={"Content-Type": "application/apply-patch+yaml"},
    )  # fmt: skip
    assert code == (200 if forced else 409)


SECRET_PB = b"k8s\x00\x0a\x0c\x0a\x02v1\x12\x06Secret\x12\x0c\x0a\x05\x0a\x03abc\x1a\x03Opq"


@pytest.mark.parametrize(
    ("body", "words"),
    [(SECRET_PB[:-2], "runs past the end"), (SECRET_PB[:5] + b"\xff", "truncated protobuf varint"),
     (b"\x0a\x02v1", "k8s\\0 magic"), (SECRET_PB.replace(b"\x0a\x03abc", b"\x08\x85\x80\x80\x00"), "wrong wire type"),
     (SECRET_PB[:-3] + b"\xff\xfe\xfd", "not valid UTF-8")],
    ids=["short-field", "short-varint", "no-magic", "wire-type", "utf8"],
)  # fmt: skip
async def test_a_protobuf_body_that_cannot_be_decoded_is_400(emulator, body, words):
    """The real server answers 400 to a body it cannot decode in a type it serves; 415 is
    kept for what the emulator does not read (test above)."""
    headers = {"Content-Type": "application/vnd.kubernetes.protobuf"}
    secrets = "/api/v1/namespaces/default/secrets"
    code, answer, _ = await send(emulator, "POST", secrets, data=body, headers=headers)
    assert (code, answer["reason"]) == (400, "BadRequest")
    assert words in answer["message"]
    code, created, _ = await send(emulator, "POST", secrets, data=SECRET_PB, headers=headers)
    assert (code, created["metadata"]["name"], created["type"]) == (201, "abc", "Opq")


@pytest.mark.parametrize("value", [[1], "x", None])
async def test_a_json_patch_that_replaces_the_object_with_a_non_object_is_422(emulator, value):
    """The real server's decoder cannot read the result into the kind and answers 422 on the
    field "patch"; the emulator once answered 500."""
    await send(emulator, "POST", DEPLOYMENTS, workload("whole"))
    code, answer, _ = await send(
        emulator, "PATCH", f"{DEPLOYMENTS}/whole", [{"op": "replace", "path": "", "value": value}],
        headers={"Content-Type": "application/json-patch+json"},
    )  # fmt: skip
    assert (code, answer["details"]["causes"][0]["field"]) == (422, "patch")


@pytest.mark.parametrize(
    ("containers", "field"),
    [([None], "spec.template.spec.containers[0].name"),
     ([{"name": "c", "image": IMAGE, "env": [None]}], "spec.template.spec.containers[0].env[0].name"),
     ([{"name": "c", "image": IMAGE, "env": [{"name": None}]}],
      "spec.template.spec.containers[0].env[0].name")],
    ids=["null-container", "null-env-entry", "null-env-name"],
)  # fmt: skip
async def test_null_list_elements_and_fields_decode_as_go_zero_values(emulator, containers, field):
    """Go's decoder turns a null list element into an empty struct and leaves a null field
    unset, so validation refuses the nameless result (422); a merge patch keeps nulls inside
    lists, and the emulator once answered 500 to them."""
    await send(emulator, "POST", DEPLOYMENTS, workload("nulls"))
    patch = {"spec": {"template": {"spec": {"containers": containers}}}}
    code, answer, _ = await send(emulator, "PATCH", f"{DEPLOYMENTS}/nulls", patch,
                                 headers={"Content-Type": "application/merge-patch+json"})  # fmt: skip
    assert code == 422, answer
    assert field in [c["field"] for c in answer["details"]["causes"]]
