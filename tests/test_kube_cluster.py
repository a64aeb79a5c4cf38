"""The cluster harness end to end: scheduling and real processes, through the ``kube`` fixture.

Emulated Kubernetes by default (see tests/conftest.py); the same tests run
against a real API server with SOVEREIGN_TEST_KUBECONFIG.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import aiohttp
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from sovereign_hub.sandbox.kube.leases import NodeLeases
from tests.conftest import ROOT, eventually, require_tool

NS_IMAGE = "registry.example/nb@sha256:" + "a" * 64
PY = sys.executable
EU = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {
                            "key": "topology.kubernetes.io/region",
                            "operator": "In",
                            "values": ["eu-central-1"],
                        }
                    ]
                }
            ]
        }
    }
}
US = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {
                            "key": "topology.kubernetes.io/region",
                            "operator": "In",
                            "values": ["us-east-1"],
                        }
                    ]
                }
            ]
        }
    }
}
GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


# The scheduler that must place the test's pods: the emulated cluster's own,
# or, on a real API server, the local scheduler (never the cluster's, which
# would bind them to real nodes). Set per test from the `kube` fixture.
SCHEDULER = {"name": "default-scheduler"}


@pytest.fixture(autouse=True)
def scheduler_of(kube):
    SCHEDULER["name"] = kube.scheduler_name


def pod(name: str, command: list[str], **spec) -> dict:
    container = {"name": "notebook", "image": NS_IMAGE, "command": command}
    container.update(spec.pop("container", {}))
    return {
        "metadata": {"name": name, "labels": {"app": "test"}},
        "spec": {"containers": [container], "schedulerName": SCHEDULER["name"], **spec},
    }


def sleeper(name: str, **spec) -> dict:
    return pod(name, [PY, "-c", "import time; time.sleep(600)"], **spec)


async def phase(core, ns, name, wanted):
    async def check():
        p = await core.read_namespaced_pod(name, ns)
        return p if p.status.phase == wanted else None

    return await eventually(check)


async def test_pods_run_as_processes_on_their_own_addresses(kube, core):
    ns = kube.namespace
    server = [PY, "-m", "http.server", "--bind", "0.0.0.0", "8888"]
    probe = {"httpGet": {"path": "/", "port": 8888}, "periodSeconds": 1}
    for name in ("web-a", "web-b"):
        await core.create_namespaced_pod(ns, pod(name, server, container={"readinessProbe": probe}))
    ips = set()
    for name in ("web-a", "web-b"):

        async def ready(name=name):
            p = await core.read_namespaced_pod(name, ns)
            conds = {c.type: c.status for c in p.status.conditions or []}
            return p if conds.get("Ready") == "True" else None

        p = await eventually(ready)
        assert p.status.pod_ip.startswith("127.")
        assert p.status.pod_ip != "127.0.0.1"
        ips.add(p.status.pod_ip)
        # Both listen on port 8888: each in its own "network namespace".
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{p.status.pod_ip}:8888/") as r,
        ):
            assert r.status == 200
    assert len(ips) == 2


async def test_environment_is_built_as_kubernetes_builds_it(kube, core):
    ns = kube.namespace
    await core.create_namespaced_secret(
        ns, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}}
    )
    await core.create_namespaced_config_map(
        ns, {"metadata": {"name": "cfg"}, "data": {"REGION": "eu"}}
    )
    env = [
        {"name": "GREETING", "value": "hello"},
        {"name": "MESSAGE", "value": "$(GREETING) world $$(LITERAL)"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
    ]
    script = "import json, os; print(json.dumps(dict(os.environ)), flush=True)"
    spec = pod(
        "env",
        [PY, "-c", script],
        restartPolicy="Never",
        container={
            "env": env,
            "envFrom": [{"configMapRef": {"name": "cfg"}}],
            "args": ["$(GREETING)"],
        },
    )
    await core.create_namespaced_pod(ns, spec)
    done = await phase(core, ns, "env", "Succeeded")
    seen = json.loads(kube.pod_log(ns, "env").strip())
    assert seen["MESSAGE"] == "hello world $(LITERAL)"
    assert seen["POD"] == "env"
    assert seen["IP"] == done.status.pod_ip
    assert seen["TOKEN"] == "s3cret"
    assert seen["REGION"] == "eu"


async def test_missing_secret_keeps_the_pod_waiting_with_the_reason(kube, core):
    ns = kube.namespace
    env = [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]
    await core.create_namespaced_pod(ns, sleeper("nosecret", container={"env": env}))

    async def waiting():
        p = await core.read_namespaced_pod("nosecret", ns)
        statuses = p.status.container_statuses or []
        return statuses and statuses[0].state.waiting

    state = await eventually(waiting)
    assert state.reason == "CreateContainerConfigError"
    assert 'secret "absent" not found' in state.message


@pytest.mark.parametrize(
    ("policy", "code", "expected_phase"),
    [("Never", 3, "Failed"), ("Never", 0, "Succeeded"), ("OnFailure", 0, "Succeeded")],
)
async def test_exit_is_reported_with_the_exit_code(kube, core, policy, code, expected_phase):
    ns = kube.namespace
    await core.create_namespaced_pod(
        ns, pod("job", [PY, "-c", f"raise SystemExit({code})"], restartPolicy=policy)
    )
    p = await phase(core, ns, "job", expected_phase)
    terminated = p.status.container_statuses[0].state.terminated
    assert terminated.exit_code == code
    assert terminated.reason == ("Completed" if code == 0 else "Error")


async def test_crashing_container_is_restarted_with_back_off(kube, core):
    ns = kube.namespace
    await core.create_namespaced_pod(
        ns, pod("crash", [PY, "-c", "raise SystemExit(7)"], restartPolicy="OnFailure")
    )

    async def restarted():
        p = await core.read_namespaced_pod("crash", ns)
        statuses = p.status.container_statuses or []
        return p if statuses and statuses[0].restart_count >= 1 else None

    p = await eventually(restarted)
    status = p.status.container_statuses[0]
    assert p.status.phase == "Running"
    assert status.last_state.terminated.exit_code == 7


async def test_deleting_a_pod_stops_its_process(kube, core):
    ns = kube.namespace
    await core.create_namespaced_pod(ns, sleeper("long", terminationGracePeriodSeconds=5))
    p = await phase(core, ns, "long", "Running")
    pid = int(p.status.container_statuses[0].container_id.removeprefix("process://"))
    os.kill(pid, 0)  # alive
    await core.delete_namespaced_pod("long", ns)

    async def gone():
        try:
            await core.read_namespaced_pod("long", ns)
        except ApiException as exc:
            return exc.status == 404
        return False

    await eventually(gone)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_region_affinity_places_pods_in_their_region(kube, core):
    ns = kube.namespace
    await core.create_namespaced_pod(ns, sleeper("eu", affinity=EU))
    await core.create_namespaced_pod(ns, sleeper("us", affinity=US))
    assert (await phase(core, ns, "eu", "Running")).spec.node_name == kube.nodes["eu-cpu-1"]
    assert (await phase(core, ns, "us", "Running")).spec.node_name == kube.nodes["us-cpu-1"]


async def failed_scheduling(core, ns, name):
    async def check():
        events = await core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
        return [e for e in events.items if e.reason == "FailedScheduling"]

    return (await eventually(check))[0]


async def test_gpu_pod_pends_with_the_schedulers_reason_until_gpus_are_freed(kube, core):
    ns = kube.namespace
    gpus = lambda n: {"resources": {"limits": {"nvidia.com/gpu": str(n)}}}  # noqa: E731
    await core.create_namespaced_pod(
        ns, sleeper("big", affinity=EU, tolerations=GPU_TOLERATION, container=gpus(2))
    )
    assert (await phase(core, ns, "big", "Running")).spec.node_name == kube.nodes["eu-gpu-1"]
    await core.create_namespaced_pod(
        ns, sleeper("small", affinity=EU, tolerations=GPU_TOLERATION, container=gpus(1))
    )
    event = await failed_scheduling(core, ns, "small")
    assert event.type == "Warning"
    assert event.message == (
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
        "2 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 1 Preemption is "
        "not helpful for scheduling, 2 No preemption victims found for incoming pod."
    )

    # The event and the pod's condition are written separately, in no set order
    # (as by kube-scheduler): wait for the condition.
    async def unschedulable():
        pod = await core.read_namespaced_pod("small", ns)
        conditions = pod.status.conditions or []
        return (
            pod
            if any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions)
            else None
        )

    pending = await eventually(unschedulable)
    assert pending.status.phase == "Pending"
    await core.delete_namespaced_pod("big", ns)
    assert (await phase(core, ns, "small", "Running")).spec.node_name == kube.nodes["eu-gpu-1"]


async def test_untolerated_gpu_taint_is_named(kube, core):
    ns = kube.namespace
    gpu = {"resources": {"limits": {"nvidia.com/gpu": "1"}}}
    await core.create_namespaced_pod(ns, sleeper("untolerated", affinity=EU, container=gpu))
    event = await failed_scheduling(core, ns, "untolerated")
    assert "1 node(s) had untolerated taint {nvidia.com/gpu: present}" in event.message


async def test_claim_must_exist_then_binds_and_keeps_data_across_pods(kube, core):
    ns = kube.namespace
    volume = {"volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-ana"}}]}
    mount = {
        "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}],
        "workingDir": "/home/jovyan",
    }
    write = pod(
        "writer",
        [PY, "-c", "open('note.txt', 'w').write('kept')"],
        restartPolicy="Never",
        container=mount,
        **volume,
    )
    await core.create_namespaced_pod(ns, write)
    event = await failed_scheduling(core, ns, "writer")
    assert 'persistentvolumeclaim "claim-ana" not found' in event.message
    claim = {
        "metadata": {"name": "claim-ana"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "ssd-eu",
        },
    }
    await core.create_namespaced_persistent_volume_claim(ns, claim)
    await phase(core, ns, "writer", "Succeeded")
    assert (
        await core.read_namespaced_persistent_volume_claim("claim-ana", ns)
    ).status.phase == "Bound"
    read = pod(
        "reader",
        [PY, "-c", "print(open('note.txt').read())"],
        restartPolicy="Never",
        container=mount,
        **volume,
    )
    await core.create_namespaced_pod(ns, read)
    await phase(core, ns, "reader", "Succeeded")
    assert kube.pod_log(ns, "reader").strip() == "kept"


async def test_every_node_has_a_lease_renewed_as_a_kubelet_does(kube, core):
    """Without heartbeats a real cluster's node lifecycle controller would take the emulated
    nodes for unreachable after 40 s. Each has a Lease in kube-node-lease, owned by its Node,
    and the kubelet renews it on a quarter of its duration."""
    if kube.leases is None:
        pytest.skip("SOVEREIGN_TEST_NODES=real: the cluster's own kubelets renew their leases")
    leases = client.CoordinationV1Api(core.api_client)
    found = {}
    for node in kube.nodes.values():
        lease = await leases.read_namespaced_lease(node, "kube-node-lease")
        owner = (await core.read_node(node)).metadata.uid
        assert lease.spec.holder_identity == node
        assert lease.spec.lease_duration_seconds == 40
        assert [(o.kind, o.name, o.uid) for o in lease.metadata.owner_references] == [
            ("Node", node, owner)
        ]
        found[node] = lease
    assert kube.leases.renew_seconds == 10
    # The same loop with a shorter period, so the test need not wait ten seconds.
    heartbeat = NodeLeases(core.api_client, kube.nodes.values(), renew_seconds=0.05)
    running = asyncio.create_task(heartbeat.run())
    try:
        for node, before in found.items():

            async def renewed(node=node, before=before):
                after = await leases.read_namespaced_lease(node, "kube-node-lease")
                return after.spec.renew_time > before.spec.renew_time

            await eventually(renewed, timeout=5)
    finally:
        running.cancel()


KUBECTL = ROOT / ".tools" / "kubectl-1.35" / "kubectl"


def test_kubectl_a_go_client_works_against_the_cluster(kube):
    """kubectl 1.35 (client-go) against the cluster: it sends its token because the API server
    speaks TLS, reads discovery, creates a pod, waits for it through a streaming list
    (sendInitialEvents), reads its log, runs commands in it (exec over WebSocket, with stdin
    and the exit code) and deletes it, waiting again. Its default strict validation is left
    to the server, which the OpenAPI v3 documents say validates fields."""
    require_tool(KUBECTL, "helm")

    def kubectl(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(kube.kubeconfig), "-n", kube.namespace, *args],
            input=stdin, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    names = kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").split()
    assert set(kube.nodes.values()) <= set(names)
    manifest = pod("hello", [PY, "-c", "print('hello from the pod', flush=True); "
                             "import time; time.sleep(600)"])  # fmt: skip
    manifest.update(apiVersion="v1", kind="Pod")
    assert "pod/hello created" in kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    assert "condition met" in kubectl("wait", "--for=condition=Ready", "pod/hello", "--timeout=30s")
    log = kubectl("logs", "hello") if kube.emulated else kube.pod_log(kube.namespace, "hello")
    assert log == "hello from the pod\n"
    assert kubectl("get", "pod", "hello", "-o", "jsonpath={.status.phase}") == "Running"
    # Human output comes from the server's tables; short names from discovery.
    header, row = kubectl("get", "po", "-o", "wide").splitlines()
    assert header.split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert row.split()[:4] == ["hello", "1/1", "Running", "0"]
    node = kubectl("get", "pod", "hello", "-o", "jsonpath={.spec.nodeName}")
    assert node in row.split()
    assert f"{node} Ready" in " ".join(kubectl("get", "no", node).split())
    if kube.emulated:  # exec is proxied to the node's kubelet: only the emulated nodes have one
        said = kubectl("exec", "-i", "hello", "--", PY, "-c",
                       "import sys; print(sys.stdin.read().upper())", stdin="from kubectl")  # fmt: skip
        assert said == "FROM KUBECTL\n"
        failed = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(kube.kubeconfig), "-n", kube.namespace,
             "exec", "hello", "--", PY, "-c", "raise SystemExit(4)"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert failed.returncode == 4, failed.stderr
    kubectl("delete", "pod", "hello", "--wait=true", "--timeout=30s")
    assert kubectl("get", "pods", "-o", "name") == ""


async def test_an_emulated_api_server_restart_ends_watches_keeps_state_and_the_cluster_recovers(
    kube, core
):
    """Kubernetes is emulated here: a kube-apiserver restart, as clients meet it."""
    if not kube.emulated:
        pytest.skip("restarting the API server needs the emulated one; a real one is not ours")
    ns = kube.namespace
    before = await core.create_namespaced_pod(ns, sleeper("before"))
    await phase(core, ns, "before", "Running")
    server = kube.server

    async def watch_until_closed() -> str:
        from kubernetes_asyncio.watch import Watch

        try:
            async with Watch().stream(core.list_namespaced_pod, ns, timeout_seconds=120) as stream:
                async for _ in stream:
                    pass
        except (ApiException, aiohttp.ClientError) as exc:
            return f"error: {exc}"
        return "ended"

    watching = asyncio.create_task(watch_until_closed())
    await asyncio.sleep(0.5)
    restart = asyncio.create_task(asyncio.to_thread(kube.restart_api_server, 2.0))
    # The open watch ends with the server, as a real restart drops every watch.
    assert await asyncio.wait_for(watching, 10)
    await asyncio.sleep(0.5)
    with pytest.raises(aiohttp.ClientConnectionError):
        await core.read_namespaced_pod("before", ns)
    await restart

    assert kube.server == server  # the same port: kubeconfigs stay valid
    kept = await core.read_namespaced_pod("before", ns)
    assert kept.metadata.uid == before.metadata.uid  # state survives, as in etcd
    assert kept.status.phase == "Running"
    # The scheduler's and kubelet's watches relisted: a new pod is placed and run.
    await core.create_namespaced_pod(ns, sleeper("after"))
    await phase(core, ns, "after", "Running")


async def test_the_emulated_scheduler_carries_on_after_a_cycle_meets_the_api_server_away(
    kube, core
):
    """Kubernetes is emulated here. A scheduling cycle that finds the API server away (here:
    reading a pending pod's claim) is retried at the next cycle, as kube-scheduler puts the
    pod back in its queue. Before, the failed call ended the scheduler's task, and every pod
    created afterwards stayed Pending with no event: the storm test's spawns that waited for
    their whole start_timeout."""
    if not kube.emulated:
        pytest.skip("restarting the API server needs the emulated one; a real one is not ours")
    ns = kube.namespace
    # Pending while its claim is missing: each scheduling cycle (every 2 s) reads the claim.
    claim = {"name": "home", "persistentVolumeClaim": {"claimName": "not-yet"}}
    await core.create_namespaced_pod(ns, sleeper("waiting", volumes=[claim]))

    async def unschedulable():
        p = await core.read_namespaced_pod("waiting", ns)
        return any(c.type == "PodScheduled" for c in p.status.conditions or [])

    await eventually(unschedulable)
    # Down longer than a cycle's interval, so at least one cycle runs while it is away.
    await asyncio.to_thread(kube.restart_api_server, 3.0)
    await core.create_namespaced_pod(ns, sleeper("after"))
    placed = await phase(core, ns, "after", "Running")
    assert placed.spec.node_name
