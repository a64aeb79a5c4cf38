"""Placeholders and the user scheduler, in the emulated cluster (Kubernetes is emulated).

The emulated scheduler serves two profiles, as one kube-scheduler process
configured like the chart's user scheduler would: the default one
(``LeastAllocated``: spread) and ``user-scheduler`` (``MostAllocated``:
pack). Placeholders are low-priority pods holding a GPU; a user pod that
needs it preempts one and starts in its place. The emulator runs no
StatefulSet controller, so where the chart's StatefulSet would put a
preempted placeholder back, the test creates it again itself.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client, config

from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.sandbox.kube.inventory import load_inventory
from sovereign_hub.sandbox.kube.placement import Profile
from tests.conftest import ROOT, eventually
from tests.test_helm_chart import HERE, by_kind, helm_binary, render

USER_SCHEDULER = "user-scheduler"
IMAGE = "registry.example/pause@sha256:" + "b" * 64
GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)",
]


@pytest.fixture
def cluster(tmp_path: Path):
    started = Cluster(
        load_inventory(ROOT / "tests" / "data" / "nodes-gpu-pair.yaml"),
        tmp_path / "kube",
        scheduler_profiles={USER_SCHEDULER: Profile("MostAllocated")},
    ).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def apis(cluster):
    api = await config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield client.CoreV1Api(api), client.SchedulingV1Api(api)
    finally:
        await api.close()


def gpu_pod(name: str, *, priority_class: str | None = None, scheduler: str = USER_SCHEDULER):
    spec: dict = {
        "schedulerName": scheduler,
        "tolerations": GPU_TOLERATION,
        "terminationGracePeriodSeconds": 0,
        "containers": [
            {
                "name": "c",
                "image": IMAGE,
                "command": SLEEP,
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }
        ],
    }
    if priority_class:
        spec["priorityClassName"] = priority_class
    return {"metadata": {"name": name}, "spec": spec}


def cpu_pod(name: str, scheduler: str) -> dict:
    requests = {"cpu": "1", "memory": "1Gi"}
    return {
        "metadata": {"name": name},
        "spec": {
            "schedulerName": scheduler,
            "tolerations": GPU_TOLERATION,
            "containers": [
                {
                    "name": "c",
                    "image": IMAGE,
                    "command": SLEEP,
                    "resources": {"requests": requests, "limits": requests},
                }
            ],
        },
    }


async def running(core, ns, name):
    async def check():
        pod = await core.read_namespaced_pod(name, ns)
        return pod if pod.status.phase == "Running" else None

    return await eventually(check, timeout=60)


async def scheduling_events(core, ns, name):
    events = await core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
    return [e for e in events.items if e.source and e.source.component]


async def test_a_user_gpu_pod_preempts_a_placeholder_which_then_waits(cluster, apis):
    core, sched = apis
    ns = cluster.namespace
    await sched.create_priority_class(
        {
            "metadata": {"name": "user-placeholder"},
            "value": -10,
            "preemptionPolicy": "Never",
        }
    )
    await sched.create_priority_class({"metadata": {"name": "user"}, "value": 0})
    for i in (1, 2):
        await core.create_namespaced_pod(
            ns, gpu_pod(f"placeholder-{i}", priority_class="user-placeholder")
        )
    held = {(await running(core, ns, f"placeholder-{i}")).spec.node_name for i in (1, 2)}
    assert held == {"eu-gpu-1", "eu-gpu-2"}  # every GPU is held by a placeholder

    await core.create_namespaced_pod(ns, gpu_pod("alice", priority_class="user"))
    alice = await running(core, ns, "alice")
    assert alice.status.nominated_node_name == alice.spec.node_name

    # Exactly one placeholder was evicted, the one on alice's node, marked as the scheduler
    # marks a victim, with a Preempted event naming the node.
    async def evicted():
        pods = {p.metadata.name for p in (await core.list_namespaced_pod(ns)).items}
        return {"placeholder-1", "placeholder-2"} - pods

    gone = await eventually(evicted)
    assert len(gone) == 1
    victim = gone.pop()
    events = await core.list_namespaced_event(ns, field_selector=f"involvedObject.name={victim}")
    preempted = [e for e in events.items if e.reason == "Preempted"]
    assert preempted
    assert preempted[0].message.endswith(f"on node {alice.spec.node_name}")
    assert preempted[0].source.component == USER_SCHEDULER  # the profile that preempted
    kept = ({"placeholder-1", "placeholder-2"} - {victim}).pop()
    assert (await core.read_namespaced_pod(kept, ns)).status.phase == "Running"

    # The StatefulSet would put the placeholder back: it waits, and never preempts alice
    # (lower priority, and preemptionPolicy Never).
    await core.create_namespaced_pod(ns, gpu_pod(victim, priority_class="user-placeholder"))

    async def unschedulable():
        pod = await core.read_namespaced_pod(victim, ns)
        conditions = pod.status.conditions or []
        return pod if any(c.reason == "Unschedulable" for c in conditions) else None

    pending = await eventually(unschedulable)
    assert pending.status.phase == "Pending"
    assert "preemption: not eligible due to preemptionPolicy=Never." in next(
        c.message for c in pending.status.conditions if c.reason == "Unschedulable"
    )
    await asyncio.sleep(1)
    assert (await core.read_namespaced_pod("alice", ns)).status.phase == "Running"


async def test_a_victim_gets_the_disruption_target_condition(cluster, apis):
    core, sched = apis
    ns = cluster.namespace
    await sched.create_priority_class({"metadata": {"name": "low"}, "value": -10})
    await sched.create_priority_class({"metadata": {"name": "high"}, "value": 10})
    # A victim that ignores SIGTERM, with a grace period to read it while it terminates.
    slow = [gpu_pod(f"low-{i}", priority_class="low") for i in (1, 2)]
    for body in slow:
        body["spec"]["terminationGracePeriodSeconds"] = 8  # room for a poll on a busy machine
        body["spec"]["containers"][0]["command"] = STUBBORN
        await core.create_namespaced_pod(ns, body)
    for body in slow:
        await running(core, ns, body["metadata"]["name"])
    await asyncio.sleep(2)  # Running is the process started: let Python install SIG_IGN
    await core.create_namespaced_pod(ns, gpu_pod("urgent", priority_class="high"))

    # The scheduler writes the condition, then deletes: a read between the two sees the
    # condition alone, so wait for both (kube-scheduler's preemption does the same two calls).
    async def marked():
        for body in slow:
            pod = await core.read_namespaced_pod(body["metadata"]["name"], ns)
            for c in pod.status.conditions or []:
                if c.type == "DisruptionTarget" and pod.metadata.deletion_timestamp:
                    return pod, c
        return None

    victim, condition = await eventually(marked)
    assert (condition.status, condition.reason) == ("True", "PreemptionByScheduler")

    # While its victim terminates, the preemptor waits for that room and evicts no one else.
    async def waiting_for_the_victim():
        events = await core.list_namespaced_event(ns, field_selector="involvedObject.name=urgent")
        return [e for e in events.items if "terminating pod on the nominated node" in e.message]

    assert await eventually(waiting_for_the_victim)
    others = [b["metadata"]["name"] for b in slow if b["metadata"]["name"] != victim.metadata.name]
    assert (await core.read_namespaced_pod(others[0], ns)).metadata.deletion_timestamp is None
    assert (await running(core, ns, "urgent")).spec.node_name == victim.spec.node_name


@pytest.mark.parametrize(
    ("scheduler", "same_node"), [("default-scheduler", False), (USER_SCHEDULER, True)]
)
async def test_the_user_scheduler_packs_where_the_default_spreads(
    cluster, apis, scheduler, same_node
):
    core, _ = apis
    ns = cluster.namespace
    await core.create_namespaced_pod(ns, cpu_pod("first", scheduler))
    first = await running(core, ns, "first")
    await core.create_namespaced_pod(ns, cpu_pod("second", scheduler))
    second = await running(core, ns, "second")
    assert (first.spec.node_name == second.spec.node_name) is same_node


async def test_a_pod_naming_no_served_scheduler_stays_pending_without_events(cluster, apis):
    core, _ = apis
    ns = cluster.namespace
    await core.create_namespaced_pod(ns, cpu_pod("orphan", "no-such-scheduler"))
    await core.create_namespaced_pod(ns, cpu_pod("served", USER_SCHEDULER))
    await running(core, ns, "served")
    await asyncio.sleep(2.5)  # more than one resync of the scheduler
    orphan = await core.read_namespaced_pod("orphan", ns)
    assert orphan.status.phase == "Pending"
    assert orphan.spec.node_name is None
    assert not orphan.status.conditions
    assert not (await scheduling_events(core, ns, "orphan"))


CHART_SCHEDULER = "rel-sovereign-hub-user-scheduler"


@pytest.fixture
def chart_cluster(tmp_path: Path):
    """The pair inventory, its scheduler serving the chart's user-scheduler name as the chart's
    KubeSchedulerConfiguration does (MostAllocated)."""
    started = Cluster(
        load_inventory(ROOT / "tests" / "data" / "nodes-gpu-pair.yaml"),
        tmp_path / "kube",
        scheduler_profiles={CHART_SCHEDULER: Profile("MostAllocated")},
    ).start()
    try:
        yield started
    finally:
        started.stop()


async def test_the_charts_placeholders_are_preempted_by_a_user_at_the_charts_priority(
    chart_cluster, tmp_path
):
    """The objects the real Helm renders from scheduling-values.yaml, run in the emulated
    cluster: the PriorityClasses as rendered, placeholder pods from the StatefulSet's template
    (named as its controller names them), the pause image's process emulated by a sleep."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        yaml.safe_dump({"policy": yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())})
    )
    docs = render(helm_binary("4.1"), policy, HERE / "scheduling-values.yaml")
    (sts,) = [
        d for d in by_kind(docs, "StatefulSet") if d["metadata"]["name"].endswith("-gpu-a100")
    ]
    template = sts["spec"]["template"]
    (pause,) = template["spec"]["containers"]
    chart_cluster.kubelet.entrypoints[pause["image"]] = SLEEP
    api = await config.new_client_from_config(config_file=str(chart_cluster.kubeconfig))
    core, sched = client.CoreV1Api(api), client.SchedulingV1Api(api)
    ns = chart_cluster.namespace
    try:
        for pc in by_kind(docs, "PriorityClass"):
            await sched.create_priority_class(pc)

        def placeholder(i: int) -> dict:
            meta = {"name": f"{sts['metadata']['name']}-{i}", **template["metadata"]}
            return {"metadata": meta, "spec": template["spec"]}

        for i in range(sts["spec"]["replicas"]):
            await core.create_namespaced_pod(ns, placeholder(i))
        held = [await running(core, ns, f"{sts['metadata']['name']}-{i}") for i in (0, 1)]
        assert {p.spec.node_name for p in held} == {"eu-gpu-1", "eu-gpu-2"}
        assert {p.spec.priority for p in held} == {-10}

        # A user server as the hub makes it with these values: the chart's scheduler and
        # priority class, one A100 in the EU.
        user = gpu_pod("jupyter-ana", priority_class="rel-sovereign-hub-default-priority",
                       scheduler=CHART_SCHEDULER)  # fmt: skip
        user["spec"]["affinity"] = template["spec"]["affinity"]
        await core.create_namespaced_pod(ns, user)
        ana = await running(core, ns, "jupyter-ana")
        assert ana.spec.priority == 10
        names = {p.metadata.name for p in (await core.list_namespaced_pod(ns)).items}
        evicted = {f"{sts['metadata']['name']}-{i}" for i in (0, 1)} - names
        assert len(evicted) == 1

        # The StatefulSet puts it back: Pending, for the autoscaler to see.
        await core.create_namespaced_pod(ns, placeholder(int(evicted.pop().rsplit("-", 1)[1])))

        async def pending_unschedulable():
            pods = (await core.list_namespaced_pod(ns)).items
            return [
                p
                for p in pods
                if p.spec.priority == -10
                and any(c.reason == "Unschedulable" for c in p.status.conditions or [])
            ]

        (waiting,) = await eventually(pending_unschedulable)
        assert waiting.status.phase == "Pending"
    finally:
        await api.close()
