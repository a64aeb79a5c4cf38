"""What the project relies on a Kubernetes API server to do, one test per behaviour.

Each test names, in its docstring, the Kubernetes documentation or API
convention it follows. The file runs against the emulated cluster by default
and, unchanged, against a real API server (with its controller manager) when
SOVEREIGN_TEST_KUBECONFIG names one: it is how the emulator is held to real
semantics. Pods here run on the project's own scheduler and process kubelet
in both modes (see tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from tests.conftest import eventually

PY = sys.executable
IMAGE = "registry.example/nb@sha256:" + "a" * 64
SLEEP = [PY, "-c", "import time; time.sleep(600)"]


@pytest.fixture
def make_pod(kube):
    """Pod manifests for the test's scheduler (the local one on a real API server)."""

    def build(name: str, command: list[str], *, container: dict | None = None, **spec) -> dict:
        box = {"name": "main", "image": IMAGE, "command": command, **(container or {})}
        return {
            "metadata": {"name": name},
            "spec": {"containers": [box], "schedulerName": kube.scheduler_name, **spec},
        }

    return build


async def gone(read, *args) -> bool:
    try:
        await read(*args)
    except ApiException as exc:
        return exc.status == 404
    return False


async def running(core, ns: str, name: str):
    async def check():
        pod = await core.read_namespaced_pod(name, ns)
        return pod if pod.status.phase == "Running" and pod.status.container_statuses else None

    return await eventually(check)


async def raw(core, method: str, path: str, *, body=None, query=None, headers=None):
    """One request as a client library would send it, on the cluster's own credentials."""
    api = core.api_client
    answer = await api.call_api(
        path, method, query_params=list((query or {}).items()), header_params=headers or {},
        body=body, auth_settings=["BearerToken"], _preload_content=False,
    )  # fmt: skip
    response = answer[0] if isinstance(answer, tuple) else answer
    return response.status, await response.read()


# -- deletion ---------------------------------------------------------------


async def test_delete_options_come_from_the_body_alone_when_it_has_one(kube, core, make_pod):
    """kube-apiserver decodes a DELETE's DeleteOptions from its body when the request has one,
    and then ignores the query string (apiserver `handlers/delete.go`; API conventions,
    "DeleteOptions"). The generated Python client sends `grace_period_seconds` in the query
    and `body` in the body: the body wins."""
    ns = kube.namespace
    await core.create_namespaced_pod(
        ns, make_pod("graceful", SLEEP, terminationGracePeriodSeconds=60)
    )
    await running(core, ns, "graceful")
    deleted = await core.delete_namespaced_pod(
        "graceful", ns, grace_period_seconds=0, body={"gracePeriodSeconds": 45}
    )
    assert deleted.metadata.deletion_grace_period_seconds == 45
    # The kubelet then stops the process and confirms with a zero grace period in the body.
    await eventually(lambda: gone(core.read_namespaced_pod, "graceful", ns), timeout=30)


async def test_delete_options_come_from_the_query_without_a_body(kube, core, make_pod):
    """Without a body, DeleteOptions are read from the query string: `gracePeriodSeconds=0`
    removes a running pod at once (Kubernetes docs, "Termination of Pods": force deletion)."""
    ns = kube.namespace
    await core.create_namespaced_pod(ns, make_pod("forced", SLEEP))
    await running(core, ns, "forced")
    status, _ = await raw(
        core, "DELETE", f"/api/v1/namespaces/{ns}/pods/forced", query={"gracePeriodSeconds": 0}
    )
    assert status == 200
    assert await gone(core.read_namespaced_pod, "forced", ns)


async def test_graceful_deletion_waits_for_the_kubelet(kube, core, make_pod):
    """A bound pod's DELETE sets deletionTimestamp and deletionGracePeriodSeconds; the object
    stays until its kubelet has stopped the containers and confirmed (docs, "Termination of
    Pods")."""
    ns = kube.namespace
    await core.create_namespaced_pod(ns, make_pod("slow", SLEEP, terminationGracePeriodSeconds=30))
    await running(core, ns, "slow")
    deleted = await core.delete_namespaced_pod("slow", ns)
    assert deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.deletion_grace_period_seconds == 30
    await eventually(lambda: gone(core.read_namespaced_pod, "slow", ns), timeout=30)


async def test_an_unbound_pod_is_deleted_at_once(kube, core, make_pod):
    """A pod no kubelet runs (not yet bound) needs no graceful termination: the pod strategy's
    CheckGracefulDelete sets its grace period to zero."""
    ns = kube.namespace
    body = make_pod("nowhere", SLEEP, nodeSelector={"no-such-label": "x"})
    await core.create_namespaced_pod(ns, body)
    await core.delete_namespaced_pod("nowhere", ns)
    assert await gone(core.read_namespaced_pod, "nowhere", ns)


@pytest.mark.parametrize("field", ["uid", "resourceVersion"])
async def test_a_failed_precondition_is_a_conflict(kube, core, field):
    """DeleteOptions.preconditions (uid, resourceVersion) must match the stored object, or the
    DELETE fails with 409 Conflict and the object stays (API conventions, "Concurrency
    Control and Consistency")."""
    ns = kube.namespace
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "pre"}})
    wrong = str(uuid.uuid4()) if field == "uid" else "1"
    with pytest.raises(ApiException) as info:
        await core.delete_namespaced_config_map("pre", ns, body={"preconditions": {field: wrong}})
    assert info.value.status == 409
    assert "Precondition failed" in json.loads(info.value.body)["message"]
    assert (await core.read_namespaced_config_map("pre", ns)).metadata.name == "pre"


async def test_a_wrong_propagation_policy_is_refused(kube, core):
    """ValidateDeleteOptions: propagationPolicy is one of Foreground, Background, Orphan."""
    ns = kube.namespace
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "policy"}})
    with pytest.raises(ApiException) as info:
        await core.delete_namespaced_config_map(
            "policy", ns, body={"propagationPolicy": "Sideways"}
        )
    assert info.value.status == 422
    assert "Sideways" in json.loads(info.value.body)["message"]


async def test_a_dry_run_delete_changes_nothing(kube, core):
    """`dryRun: ["All"]` runs every check of the request and persists nothing (API concepts,
    "Dry-run")."""
    ns = kube.namespace
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "dry"}})
    await core.delete_namespaced_config_map("dry", ns, body={"dryRun": ["All"]})
    assert (await core.read_namespaced_config_map("dry", ns)).metadata.name == "dry"


async def test_finalizers_hold_an_object_until_removed(kube, core):
    """An object with finalizers is only marked for deletion (deletionTimestamp); removing the
    last finalizer completes it (docs, "Finalizers")."""
    ns = kube.namespace
    body = {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    await core.create_namespaced_config_map(ns, body)
    await core.delete_namespaced_config_map("held", ns)
    held = await core.read_namespaced_config_map("held", ns)
    assert held.metadata.deletion_timestamp is not None
    await core.patch_namespaced_config_map(
        "held", ns, [{"op": "remove", "path": "/metadata/finalizers"}],
        _content_type="application/json-patch+json",
    )  # fmt: skip
    assert await gone(core.read_namespaced_config_map, "held", ns)


# -- garbage collection -------------------------------------------------------


def owned_by(owner, *, block: bool = False) -> list[dict]:
    ref = {
        "apiVersion": "v1",
        "kind": owner.kind or "ConfigMap",
        "name": owner.metadata.name,
        "uid": owner.metadata.uid,
    }
    if block:
        ref["blockOwnerDeletion"] = True
    return [ref]


async def test_dependents_are_collected_with_their_owner_pod(kube, core, make_pod):
    """Background propagation: once an owner is gone, the garbage collector deletes every
    object whose ownerReferences all point at gone owners (docs, "Garbage Collection").
    KubeSpawner relies on it for per-user Services and Secrets owned by the pod."""
    ns = kube.namespace
    owner = await core.create_namespaced_pod(ns, make_pod("owner", SLEEP))
    owner.kind = "Pod"
    await core.create_namespaced_secret(
        ns, {"metadata": {"name": "owned", "ownerReferences": owned_by(owner)}}
    )
    await core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "owned-svc", "ownerReferences": owned_by(owner)},
            "spec": {"ports": [{"port": 8888}], "selector": {"app": "x"}},
        },
    )
    await core.delete_namespaced_pod("owner", ns, grace_period_seconds=0)
    await eventually(lambda: gone(core.read_namespaced_secret, "owned", ns), timeout=30)
    await eventually(lambda: gone(core.read_namespaced_service, "owned-svc", ns), timeout=30)


async def test_a_dependent_with_another_live_owner_only_loses_the_reference(kube, core):
    """The garbage collector deletes a dependent only when all its owners are gone; otherwise
    it removes the dangling reference (docs, "Owners and Dependents")."""
    ns = kube.namespace
    first = await core.create_namespaced_config_map(ns, {"metadata": {"name": "first"}})
    second = await core.create_namespaced_config_map(ns, {"metadata": {"name": "second"}})
    refs = owned_by(first) + owned_by(second)
    await core.create_namespaced_config_map(
        ns, {"metadata": {"name": "shared", "ownerReferences": refs}}
    )
    await core.delete_namespaced_config_map("first", ns)

    async def pruned():
        shared = await core.read_namespaced_config_map("shared", ns)
        return [r.name for r in shared.metadata.owner_references or []] == ["second"]

    await eventually(pruned, timeout=30)


async def test_foreground_deletion_waits_for_blocking_dependents(kube, core):
    """propagationPolicy Foreground: the owner gets the foregroundDeletion finalizer and stays
    (deletionTimestamp set) until its dependents with blockOwnerDeletion are gone (docs,
    "Foreground cascading deletion")."""
    ns = kube.namespace
    owner = await core.create_namespaced_config_map(ns, {"metadata": {"name": "parent"}})
    await core.create_namespaced_config_map(
        ns,
        {
            "metadata": {
                "name": "child",
                "finalizers": ["example.com/hold"],
                "ownerReferences": owned_by(owner, block=True),
            }
        },
    )
    await core.delete_namespaced_config_map("parent", ns, body={"propagationPolicy": "Foreground"})

    async def child_deleting():
        child = await core.read_namespaced_config_map("child", ns)
        return child.metadata.deletion_timestamp is not None

    await eventually(child_deleting, timeout=30)
    parent = await core.read_namespaced_config_map("parent", ns)
    assert parent.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in parent.metadata.finalizers
    await core.patch_namespaced_config_map(
        "child", ns, [{"op": "remove", "path": "/metadata/finalizers"}],
        _content_type="application/json-patch+json",
    )  # fmt: skip
    await eventually(lambda: gone(core.read_namespaced_config_map, "parent", ns), timeout=30)


async def test_orphan_deletion_keeps_dependents_without_the_reference(kube, core):
    """propagationPolicy Orphan: the dependents stay, with the owner's reference removed, and
    then the owner goes (docs, "Orphaned dependents")."""
    ns = kube.namespace
    owner = await core.create_namespaced_config_map(ns, {"metadata": {"name": "old-owner"}})
    await core.create_namespaced_config_map(
        ns, {"metadata": {"name": "orphan", "ownerReferences": owned_by(owner)}}
    )
    await core.delete_namespaced_config_map("old-owner", ns, body={"propagationPolicy": "Orphan"})
    await eventually(lambda: gone(core.read_namespaced_config_map, "old-owner", ns), timeout=30)
    orphan = await core.read_namespaced_config_map("orphan", ns)
    assert not orphan.metadata.owner_references


async def test_an_owner_reference_must_name_its_owner_fully(kube, core):
    """ValidateOwnerReferences: apiVersion, kind, name and uid are required."""
    ns = kube.namespace
    ref = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x"}]
    with pytest.raises(ApiException) as info:
        await core.create_namespaced_config_map(
            ns, {"metadata": {"name": "bad-ref", "ownerReferences": ref}}
        )
    assert info.value.status == 422
    assert "uid" in json.loads(info.value.body)["message"]


# -- reads, watches, writes ------------------------------------------------------


async def test_watch_resumes_from_a_list_resource_version(kube, core):
    """A watch from a list's resourceVersion sends every change after it, none before (API
    concepts, "Efficient detection of changes")."""
    ns = kube.namespace
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "before"}})
    listed = await core.list_namespaced_config_map(ns)
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "after"}})
    status, body = await raw(
        core, "GET", f"/api/v1/namespaces/{ns}/configmaps",
        query={"watch": "true", "resourceVersion": listed.metadata.resource_version,
               "timeoutSeconds": 1},
    )  # fmt: skip
    assert status == 200
    events = [json.loads(line) for line in body.splitlines() if line.strip()]
    names = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert ("ADDED", "after") in names
    assert ("ADDED", "before") not in names


async def test_a_streaming_list_ends_with_the_initial_events_bookmark(kube, core):
    """sendInitialEvents=true with resourceVersionMatch=NotOlderThan and bookmarks: the current
    state as ADDED events, then a BOOKMARK annotated k8s.io/initial-events-end (API concepts,
    "Streaming lists"); without the required options it is refused."""
    ns = kube.namespace
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "present"}})
    query = {"watch": "true", "sendInitialEvents": "true", "allowWatchBookmarks": "true",
             "resourceVersionMatch": "NotOlderThan", "timeoutSeconds": 1}  # fmt: skip
    status, body = await raw(core, "GET", f"/api/v1/namespaces/{ns}/configmaps", query=query)
    assert status == 200
    events = [json.loads(line) for line in body.splitlines() if line.strip()]
    names = [e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"]
    assert "present" in names
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    annotations = bookmarks[0]["object"]["metadata"]["annotations"]
    assert annotations["k8s.io/initial-events-end"] == "true"
    del query["resourceVersionMatch"]
    status, _ = await raw(core, "GET", f"/api/v1/namespaces/{ns}/configmaps", query=query)
    assert status == 422


async def test_label_and_field_selectors(kube, core):
    """Label selectors (equality and set-based) and field selectors (metadata.name) filter
    lists (docs, "Labels and Selectors", "Field Selectors"); an unsupported field is a 400."""
    ns = kube.namespace
    for name, tier in (("sel-a", "web"), ("sel-b", "db"), ("sel-c", "cache")):
        await core.create_namespaced_config_map(
            ns, {"metadata": {"name": name, "labels": {"tier": tier, "suite": "sel"}}}
        )
    names = lambda lst: sorted(i.metadata.name for i in lst.items)  # noqa: E731
    listed = await core.list_namespaced_config_map(ns, label_selector="suite=sel,tier in (web,db)")
    assert names(listed) == ["sel-a", "sel-b"]
    listed = await core.list_namespaced_config_map(ns, label_selector="suite=sel,tier!=web")
    assert names(listed) == ["sel-b", "sel-c"]
    listed = await core.list_namespaced_config_map(ns, field_selector="metadata.name=sel-c")
    assert names(listed) == ["sel-c"]
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_config_map(ns, field_selector="data.color=red")
    assert info.value.status == 400


async def test_a_stale_resource_version_is_a_conflict(kube, core):
    """Optimistic concurrency: an update carrying an old resourceVersion fails with 409 (API
    conventions, "Concurrency Control and Consistency")."""
    ns = kube.namespace
    first = await core.create_namespaced_config_map(ns, {"metadata": {"name": "occ"}})
    await core.patch_namespaced_config_map("occ", ns, {"data": {"a": "1"}})
    first.data = {"a": "2"}
    with pytest.raises(ApiException) as info:
        await core.replace_namespaced_config_map("occ", ns, first)
    assert info.value.status == 409


async def test_patch_types(kube, core):
    """JSON patch, JSON merge patch and strategic merge patch (which merges lists by their key,
    containers by name) (docs, "Update API Objects in Place Using kubectl patch")."""
    ns = kube.namespace
    await core.create_namespaced_config_map(ns, {"metadata": {"name": "p"}, "data": {"a": "1"}})
    await core.patch_namespaced_config_map(
        "p", ns, [{"op": "add", "path": "/data/b", "value": "2"}],
        _content_type="application/json-patch+json",
    )  # fmt: skip
    await core.patch_namespaced_config_map(
        "p", ns, {"data": {"a": None, "c": "3"}}, _content_type="application/merge-patch+json"
    )
    assert (await core.read_namespaced_config_map("p", ns)).data == {"b": "2", "c": "3"}
    service = {
        "metadata": {"name": "smp"},
        "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"a": "b"}},
    }
    await core.create_namespaced_service(ns, service)
    await core.patch_namespaced_service(
        "smp", ns, {"spec": {"ports": [{"name": "https", "port": 443}]}},
        _content_type="application/strategic-merge-patch+json",
    )  # fmt: skip
    ports = (await core.read_namespaced_service("smp", ns)).spec.ports
    assert sorted(p.port for p in ports) == [80, 443]


async def test_status_is_written_only_through_its_subresource(kube, core):
    """For resources with a status subresource, an update of the main resource ignores status
    and one of /status changes nothing else (API conventions, "Spec and Status")."""
    ns = kube.namespace
    claim = {
        "metadata": {"name": "st"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                 "storageClassName": "x"},
    }  # fmt: skip
    await core.create_namespaced_persistent_volume_claim(ns, claim)
    await core.patch_namespaced_persistent_volume_claim(
        "st", ns, {"status": {"phase": "Bound"}, "metadata": {"labels": {"seen": "yes"}}}
    )
    stored = await core.read_namespaced_persistent_volume_claim("st", ns)
    assert stored.status.phase == "Pending"
    assert stored.metadata.labels == {"seen": "yes"}
    await core.patch_namespaced_persistent_volume_claim_status(
        "st", ns, {"status": {"phase": "Lost"}, "metadata": {"labels": {"seen": "no"}}}
    )
    stored = await core.read_namespaced_persistent_volume_claim("st", ns)
    assert stored.status.phase == "Lost"
    assert stored.metadata.labels == {"seen": "yes"}


# -- nodes --------------------------------------------------------------------


async def test_a_new_node_is_not_schedulable_until_it_reports_ready(kube, core):
    """TaintNodesByCondition: a new Node gets node.kubernetes.io/not-ready:NoSchedule at
    admission; the node lifecycle controller lifts it once the node's Ready condition is True
    with a fresh heartbeat, and sets not-ready NoSchedule and NoExecute for Ready=False (docs,
    "Taints and Tolerations": taint nodes by condition)."""
    name = f"{kube.namespace}-probe-{uuid.uuid4().hex[:6]}".lower()
    created = await core.create_node({"metadata": {"name": name}})
    try:
        keys = [(t.key, t.effect) for t in created.spec.taints or []]
        assert ("node.kubernetes.io/not-ready", "NoSchedule") in keys

        async def post(status: str):
            stamp = (await core.read_node(name)).metadata.creation_timestamp
            condition = {"type": "Ready", "status": status, "reason": "Probe",
                         "lastHeartbeatTime": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "lastTransitionTime": stamp.strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
            await core.patch_node_status(name, {"status": {"conditions": [condition]}})

        def taints_are(wanted):
            async def check():
                node = await core.read_node(name)
                have = {(t.key, t.effect) for t in node.spec.taints or []}
                return have == wanted

            return check

        await post("True")
        await eventually(taints_are(set()), timeout=90)
        await post("False")
        not_ready = {
            ("node.kubernetes.io/not-ready", "NoSchedule"),
            ("node.kubernetes.io/not-ready", "NoExecute"),
        }
        await eventually(taints_are(not_ready), timeout=90)
    finally:
        await core.delete_node(name)


# -- the kubelet ----------------------------------------------------------------


async def terminated_while_deleting(core, ns: str, name: str, grace: int) -> dict:
    """Delete the pod and return the terminated state its kubelet posted on the way out."""
    listed = await core.list_namespaced_pod(ns, field_selector=f"metadata.name={name}")
    api = core.api_client
    url = f"/api/v1/namespaces/{ns}/pods"
    query = [("watch", "true"), ("fieldSelector", f"metadata.name={name}"),
             ("resourceVersion", listed.metadata.resource_version), ("timeoutSeconds", "30")]  # fmt: skip
    answer = await api.call_api(
        url, "GET", query_params=query, auth_settings=["BearerToken"], _preload_content=False
    )
    response = answer[0] if isinstance(answer, tuple) else answer
    await core.delete_namespaced_pod(name, ns, body={"gracePeriodSeconds": grace})
    state: dict = {}
    async for line in response.content:
        event = json.loads(line)
        for status in event["object"].get("status", {}).get("containerStatuses") or []:
            if "terminated" in (status.get("state") or {}):
                state = status["state"]["terminated"]
        if event["type"] == "DELETED":
            break
    response.release()
    return state


READY_THEN_SLEEP = "print('ready', flush=True); import time; time.sleep(600)"
IGNORE_TERM = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); "


@pytest.mark.parametrize(
    ("script", "grace", "code"),
    [
        (READY_THEN_SLEEP, 30, 143),  # stops on SIGTERM: 128 + 15
        (IGNORE_TERM + READY_THEN_SLEEP, 1, 137),  # killed after the grace period: 128 + 9
    ],
)
async def test_a_container_killed_by_a_signal_exits_128_plus_the_signal(
    kube, core, make_pod, script, grace, code
):
    """A container runtime reports a process killed by signal N with exit code 128 + N, with
    the container's start time (docs, "Pod Lifecycle": container states; `kubectl describe`
    shows it as Exit Code 143 / 137)."""
    ns = kube.namespace
    await core.create_namespaced_pod(ns, make_pod("signalled", [PY, "-c", script]))
    pod = await running(core, ns, "signalled")
    started = pod.status.container_statuses[0].state.running.started_at
    # The signal handler is in place once the program says so.
    await eventually(lambda: asyncio.sleep(0, kube.pod_log(ns, "signalled") == "ready\n"))
    state = await terminated_while_deleting(core, ns, "signalled", grace)
    assert state["exitCode"] == code
    assert state["reason"] == "Error"
    assert state["startedAt"] == started.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_configmap_key_mounted_with_subpath_is_a_file(kube, core, make_pod):
    """A volumeMount with subPath naming a ConfigMap key mounts that one file at mountPath,
    as Zero to JupyterHub's hub pod mounts jupyterhub_config.py (docs, "Volumes": using
    subPath)."""
    ns = kube.namespace
    await core.create_namespaced_config_map(
        ns, {"metadata": {"name": "hubcfg"}, "data": {"config.py": "print('configured')\n"}}
    )
    container = {
        "args": ["/etc/app/config.py"],
        "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/app/config.py", "subPath": "config.py"}
        ],
    }
    body = make_pod(
        "subpath", [PY], container=container, restartPolicy="Never",
        volumes=[{"name": "cfg", "configMap": {"name": "hubcfg"}}],
    )  # fmt: skip
    await core.create_namespaced_pod(ns, body)

    async def done():
        pod = await core.read_namespaced_pod("subpath", ns)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    assert (await eventually(done, timeout=30)).status.phase == "Succeeded"
    assert kube.pod_log(ns, "subpath") == "configured\n"


@pytest.mark.parametrize(
    ("mount", "field"),
    [
        ({"name": "absent", "mountPath": "/x"}, "volumeMounts[0].name"),
        ({"name": "cfg", "mountPath": "/x", "subPath": "/etc"}, "volumeMounts[0].subPath"),
        ({"name": "cfg", "mountPath": "/x", "subPath": "a/../../b"}, "volumeMounts[0].subPath"),
    ],
)
async def test_a_bad_volume_mount_is_refused_at_create(kube, core, make_pod, mount, field):
    """Pod validation: a mount names a volume of the pod, and subPath is a relative path
    without '..' (ValidateVolumeMounts)."""
    body = make_pod(
        "badmount", SLEEP, container={"volumeMounts": [mount]},
        volumes=[{"name": "cfg", "configMap": {"name": "whatever"}}],
    )  # fmt: skip
    with pytest.raises(ApiException) as info:
        await core.create_namespaced_pod(kube.namespace, body)
    assert info.value.status == 422
    assert field in json.loads(info.value.body)["message"]


async def events_of(core, ns: str, name: str) -> list:
    listed = await core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
    return listed.items


async def test_the_kubelet_records_events_with_the_real_reasons(kube, core, make_pod):
    """A kubelet reports a container's life as Events: Pulled, Created, Started, and Killing on
    deletion, each naming the container by fieldPath and the node as its source (docs,
    "Debug Running Pods": events). KubeSpawner relays them as spawn progress."""
    ns = kube.namespace
    await core.create_namespaced_pod(ns, make_pod("told", SLEEP))
    pod = await running(core, ns, "told")

    async def reasons(wanted: set[str]):
        async def check():
            have = {e.reason for e in await events_of(core, ns, "told")}
            return have if wanted <= have else None

        return await eventually(check, timeout=20)

    await reasons({"Scheduled", "Pulled", "Created", "Started"})
    await core.delete_namespaced_pod("told", ns)
    await reasons({"Killing"})
    for event in await events_of(core, ns, "told"):
        if event.reason in ("Pulled", "Created", "Started", "Killing"):
            assert event.involved_object.field_path == "spec.containers{main}"
            assert event.source.component == "kubelet"
            assert event.source.host == pod.spec.node_name


async def test_a_container_that_cannot_start_says_why(kube, core, make_pod):
    """CreateContainerConfigError in the container's waiting state, and a Warning event
    'Failed' with the same reason (docs, "Debug Pods")."""
    ns = kube.namespace
    env = [{"name": "T", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "k"}}}]
    await core.create_namespaced_pod(ns, make_pod("cannot", SLEEP, container={"env": env}))

    async def failed():
        return [e for e in await events_of(core, ns, "cannot") if e.reason == "Failed"]

    event = (await eventually(failed, timeout=20))[0]
    assert event.type == "Warning"
    assert 'configmap "missing" not found' in event.message
    pod = await core.read_namespaced_pod("cannot", ns)
    assert pod.status.container_statuses[0].state.waiting.reason == "CreateContainerConfigError"


async def logs(core, ns: str, name: str, **query) -> tuple[int, str]:
    status, body = await raw(core, "GET", f"/api/v1/namespaces/{ns}/pods/{name}/log", query=query)
    return status, body.decode()


async def test_logs_belong_to_one_pod_and_one_container_instance(kube, core, make_pod):
    """A new pod with a reused name starts with empty logs; `previous=true` reads the last
    terminated instance of a restarted container (docs, "kubectl logs": --previous). On a real
    API server pods/log asks the node's kubelet, which the local kubelet's nodes have not:
    there the harness reads the kubelet's files (Cluster.pod_log)."""
    ns = kube.namespace
    say = lambda text: [PY, "-c", f"print({text!r}, flush=True); import time; time.sleep(600)"]  # noqa: E731
    await core.create_namespaced_pod(ns, make_pod("reused", say("first")))
    await running(core, ns, "reused")
    await eventually(lambda: asyncio.sleep(0, kube.pod_log(ns, "reused") == "first\n"))
    await core.delete_namespaced_pod("reused", ns, body={"gracePeriodSeconds": 0})
    await eventually(lambda: gone(core.read_namespaced_pod, "reused", ns))
    await core.create_namespaced_pod(ns, make_pod("reused", say("second")))
    await running(core, ns, "reused")
    await eventually(lambda: asyncio.sleep(0, kube.pod_log(ns, "reused") == "second\n"))
    if not kube.emulated:
        return
    restarting = [PY, "-c", "print('run', flush=True); raise SystemExit(1)"]
    await core.create_namespaced_pod(ns, make_pod("again", restarting, restartPolicy="Always"))

    async def restarted():
        pod = await core.read_namespaced_pod("again", ns)
        statuses = pod.status.container_statuses or []
        return statuses and statuses[0].restart_count >= 1

    await eventually(restarted, timeout=20)
    assert await logs(core, ns, "again", previous="true") == (200, "run\n")
    status, _ = await logs(core, ns, "reused", previous="true")
    assert status == 400


async def test_logs_follow_until_the_container_ends(kube, core, make_pod):
    """`follow=true` streams the log as it is written and ends when the container does
    (docs, "kubectl logs": -f)."""
    if not kube.emulated:
        pytest.skip("pods/log on a real API server would ask the node's kubelet: these nodes "
                    "have none")  # fmt: skip
    ns = kube.namespace
    script = "import time\nfor i in range(3):\n    print(i, flush=True); time.sleep(0.3)"
    await core.create_namespaced_pod(
        ns, make_pod("ticker", [PY, "-c", script], restartPolicy="Never")
    )
    await running(core, ns, "ticker")
    status, text = await asyncio.wait_for(logs(core, ns, "ticker", follow="true"), 20)
    assert status == 200
    assert text == "0\n1\n2\n"


# -- exec -----------------------------------------------------------------------------


def needs_local_kubelet(kube) -> None:
    if not kube.emulated:
        pytest.skip(
            "pods/exec on a real API server is proxied to the node's kubelet: the local "
            "kubelet's nodes serve no kubelet port"
        )


async def exec_ws(kube, ns: str, name: str, command: list[str], stdin: bytes | None = None):
    """One pods/exec over the v5 remote-command WebSocket; returns (stdout, stderr, status)."""
    import ssl
    from urllib.parse import urlencode

    import aiohttp
    import yaml

    config = yaml.safe_load(kube.kubeconfig.read_text())
    token = config["users"][0]["user"]["token"]
    query = [("command", c) for c in command] + [("stdout", "true"), ("stderr", "true")]
    if stdin is not None:
        query.append(("stdin", "true"))
    url = f"{kube.server}/api/v1/namespaces/{ns}/pods/{name}/exec?{urlencode(query)}"
    context = ssl.create_default_context(cafile=str(kube.state_dir / "tls" / "ca.pem"))
    out, err, status = b"", b"", None
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            url, protocols=("v5.channel.k8s.io",), ssl=context,
            headers={"Authorization": f"Bearer {token}"},
        ) as ws,
    ):  # fmt: skip
        assert ws.protocol == "v5.channel.k8s.io"
        if stdin is not None:
            await ws.send_bytes(b"\x00" + stdin)
            await ws.send_bytes(b"\xff\x00")  # v5: close stdin
        async for message in ws:
            channel, data = message.data[0], message.data[1:]
            if channel == 1:
                out += data
            elif channel == 2:
                err += data
            elif channel == 3:
                status = json.loads(data)
    return out, err, status


async def test_exec_runs_in_the_container_over_the_websocket_protocol(kube, core, make_pod):
    """pods/exec speaks the remote-command WebSocket protocol (v5.channel.k8s.io: a stream
    number before each message, 255 to half-close stdin, a Status on channel 3 with the exit
    code), in the container's environment (docs, "Get a Shell to a Running Container")."""
    needs_local_kubelet(kube)
    ns = kube.namespace
    body = make_pod("shell", SLEEP, container={"env": [{"name": "WHO", "value": "pod"}]})
    await core.create_namespaced_pod(ns, body)
    await running(core, ns, "shell")
    script = "import os, sys; print(os.environ['WHO'], sys.stdin.read()); sys.exit(3)"
    out, err, status = await exec_ws(kube, ns, "shell", [PY, "-c", script], stdin=b"hello")
    assert out == b"pod hello\n"
    assert status["status"] == "Failure"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    out, err, status = await exec_ws(
        kube, ns, "shell", [PY, "-c", "import sys; sys.stderr.write('e')"]
    )
    assert (out, err, status["status"]) == (b"", b"e", "Success")


async def test_exec_without_an_upgrade_is_refused(kube, core, make_pod):
    """A pods/exec request that is not a WebSocket (or SPDY) upgrade is a 400 'Upgrade request
    required'."""
    needs_local_kubelet(kube)
    ns = kube.namespace
    await core.create_namespaced_pod(ns, make_pod("plain", SLEEP))
    await running(core, ns, "plain")
    status, body = await raw(
        core, "POST", f"/api/v1/namespaces/{ns}/pods/plain/exec",
        query={"command": "true", "stdout": "true"},
    )  # fmt: skip
    assert status == 400
    assert b"Upgrade request required" in body


# -- validation that a lenient emulator would hide -----------------------------------------


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}, "resources.requests[cpu]"),
        ({"limits": {"memory": "lots"}}, "resources.limits[memory]"),
        (
            {"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": "1"}},
            "resources.requests[nvidia.com/gpu]",
        ),
        ({"requests": {"nvidia.com/gpu": "1"}}, "resources.limits"),
        ({"limits": {"nvidia.com/gpu": "500m"}}, "resources.limits[nvidia.com/gpu]"),
    ],
)
async def test_container_resources_are_validated(kube, core, make_pod, resources, field):
    """ValidateResourceRequirements: quantities parse; a request never exceeds its limit; an
    extended resource (nvidia.com/gpu) is whole, cannot be overcommitted and needs a limit
    equal to its request (docs, "Resource Management for Pods and Containers": extended
    resources)."""
    body = make_pod("greedy", SLEEP, container={"resources": resources})
    with pytest.raises(ApiException) as info:
        await core.create_namespaced_pod(kube.namespace, body)
    assert info.value.status == 422
    assert field in json.loads(info.value.body)["message"]


async def test_a_dry_run_create_stores_nothing(kube, core):
    """`dryRun=All` on a create runs admission and validation and stores nothing (API
    concepts, "Dry-run")."""
    ns = kube.namespace
    made = await core.create_namespaced_config_map(
        ns, {"metadata": {"name": "ghost"}}, dry_run="All"
    )
    assert made.metadata.name == "ghost"
    assert await gone(core.read_namespaced_config_map, "ghost", ns)
    with pytest.raises(ApiException) as info:
        await core.create_namespaced_config_map(ns, {"metadata": {"name": "bad"}}, dry_run="Some")
    assert info.value.status in (400, 422)


async def test_a_claims_spec_is_immutable_but_for_its_size(kube, core):
    """A PersistentVolumeClaim's spec cannot change after creation, except the requested
    storage (docs, "Persistent Volumes": expanding claims)."""
    ns = kube.namespace
    claim = {
        "metadata": {"name": "fixed"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "ssd-eu",
                 "resources": {"requests": {"storage": "1Gi"}}},
    }  # fmt: skip
    await core.create_namespaced_persistent_volume_claim(ns, claim)
    with pytest.raises(ApiException) as info:
        await core.patch_namespaced_persistent_volume_claim(
            "fixed", ns, {"spec": {"storageClassName": "ssd-us"}}
        )
    assert info.value.status == 422
    grown = await core.patch_namespaced_persistent_volume_claim(
        "fixed", ns, {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}
    )
    assert grown.spec.resources.requests["storage"] == "2Gi"


def test_the_garbage_collector_passes_over_changes_that_concern_no_owner():
    """Emulator internals (no API server): a load test deletes a thousand pods that own
    nothing and nothing owns; each used to cost a pass over every object. A change still
    concerns the collector when it names owners, deletes a known owner, or asks for
    foreground or orphan deletion."""
    from sovereign_hub.sandbox.kube.controllers.garbagecollector import GarbageCollector
    from sovereign_hub.sandbox.kube.store import Change

    def change(type_: str, **meta: object) -> Change:
        return Change(1, "pods", type_, {"metadata": {"uid": "u1", **meta}}, None)

    collector = GarbageCollector()
    assert collector._concerns(change("DELETED"))  # before a first pass, everything does
    collector.owners = set()
    assert not collector._concerns(change("DELETED"))
    assert not collector._concerns(change("MODIFIED", deletionTimestamp="2026-11-30T00:00:00Z"))
    assert collector._concerns(change("ADDED", ownerReferences=[{"uid": "o"}]))
    assert collector._concerns(change("MODIFIED", deletionTimestamp="x", finalizers=["orphan"]))
    assert collector._concerns(
        change("MODIFIED", deletionTimestamp="x", finalizers=["foregroundDeletion"])
    )
    # A Lease renewed with the same owner reference (every node, every 10 s) does not.
    renewed = {"metadata": {"uid": "l", "ownerReferences": [{"uid": "n"}]}, "spec": {}}
    assert not collector._concerns(Change(2, "leases", "MODIFIED", renewed, dict(renewed)))
    moved = {"metadata": {"uid": "l", "ownerReferences": [{"uid": "other"}]}}
    assert collector._concerns(Change(3, "leases", "MODIFIED", moved, renewed))
    collector.owners = {"u1"}
    assert collector._concerns(change("DELETED"))
