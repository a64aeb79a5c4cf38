"""The load test's GPU check: what pods hold on the cluster per quota group, against the policy.

The pure counting (:class:`PodGpus`) from pod changes as a watch delivers them;
the watch itself is exercised through the emulated Kubernetes API server.
"""

from __future__ import annotations

import asyncio
import time

from kubernetes_asyncio import client

from sovereign_hub.policy import load_policy
from sovereign_hub.sandbox.loadtest.gpuwatch import Excess, GpuWatch, PodGpus
from tests.conftest import ROOT

POLICY = load_policy(ROOT / "examples" / "policy.yaml").policy  # eu-researchers: 4, 2 per user
GROUPS = {f"u{i}": "eu-researchers" for i in range(8)} | {"ana": "us-analysts"}


def pod(name: str, user: str, gpus: dict[str, str], phase: str = "Pending") -> dict:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "annotations": {"hub.jupyter.org/username": user},
        },
        "spec": {"containers": [{"name": "notebook", "resources": {"limits": gpus}}]},
        "status": {"phase": phase},
    }


def test_a_pod_holds_its_gpus_from_creation_until_it_is_gone_or_finished():
    gpus = PodGpus(POLICY, GROUPS)
    gpus.change("ADDED", pod("a", "u0", {"nvidia.com/gpu": "1"}))
    gpus.change("ADDED", pod("b", "u1", {"nvidia.com/mig-1g.5gb": "1", "cpu": "1"}))
    gpus.change("ADDED", pod("c", "ana", {"cpu": "2"}))  # no GPU: not counted
    assert gpus.by_group() == {"eu-researchers": 2}
    assert gpus.gpu_pods == 2
    # Terminating (deletionTimestamp set) still holds: the scheduler counts it until gone.
    terminating = pod("a", "u0", {"nvidia.com/gpu": "1"}, phase="Running")
    terminating["metadata"]["deletionTimestamp"] = "2026-11-30T12:00:00Z"
    gpus.change("MODIFIED", terminating)
    assert gpus.by_group() == {"eu-researchers": 2}
    gpus.change("MODIFIED", pod("b", "u1", {"nvidia.com/mig-1g.5gb": "1"}, phase="Succeeded"))
    gpus.change("DELETED", terminating)
    assert gpus.by_group() == {}
    assert gpus.peak == {"eu-researchers": 2}
    assert gpus.excesses == []


def test_every_moment_over_a_quota_or_a_users_limit_is_recorded():
    gpus = PodGpus(POLICY, GROUPS)
    for i in range(4):
        gpus.change("ADDED", pod(f"p{i}", f"u{i}", {"nvidia.com/gpu": "1"}))
    assert gpus.excesses == []
    gpus.change("ADDED", pod("p4", "u4", {"nvidia.com/gpu": "1"}))
    assert gpus.excesses == [Excess("group eu-researchers", 5, 4, "ns/p4")]
    gpus.change("DELETED", pod("p4", "u4", {}))
    gpus.change("DELETED", pod("p3", "u3", {}))
    gpus.change("ADDED", pod("q0", "u0", {"nvidia.com/gpu": "2"}))  # u0 now holds 3 of 2
    assert gpus.excesses[-1] == Excess("user u0", 3, 2, "ns/q0")
    assert gpus.peak == {"eu-researchers": 5}


def test_a_full_list_replaces_what_the_watch_had_and_counts_no_pod_twice():
    gpus = PodGpus(POLICY, GROUPS)
    gpus.change("ADDED", pod("gone", "u0", {"nvidia.com/gpu": "1"}))
    gpus.resync({("ns", "kept"): pod("kept", "u1", {"nvidia.com/gpu": "2"})})
    assert gpus.by_group() == {"eu-researchers": 2}
    over = {("ns", f"p{i}"): pod(f"p{i}", f"u{i}", {"nvidia.com/gpu": "1"}) for i in range(5)}
    gpus.resync(over)
    assert len(gpus.excesses) == 1
    gpus.resync(over)  # a relist after a 410: the same pods, no new excess
    assert len(gpus.excesses) == 1
    assert gpus.gpu_pods == 7


async def test_the_watch_follows_pods_on_the_api_server_emulated_kubernetes(kube, core):
    """Emulated Kubernetes by default: pods made through the API are seen by the watch's own
    client, on its own thread, from its first list on."""
    ns = kube.namespace

    def body(name: str, user: str, gpus: str) -> client.V1Pod:
        return client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, annotations={"hub.jupyter.org/username": user}),
            spec=client.V1PodSpec(
                # Tolerates no GPU taint: it stays Pending, holding its GPUs all the same.
                security_context=client.V1PodSecurityContext(
                    run_as_non_root=True,
                    run_as_user=1000,
                    seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
                ),
                containers=[
                    client.V1Container(
                        name="c",
                        image="registry.invalid/x@sha256:" + "0" * 64,
                        resources=client.V1ResourceRequirements(
                            limits={"nvidia.com/gpu": gpus}, requests={"nvidia.com/gpu": gpus}
                        ),
                        security_context=client.V1SecurityContext(
                            allow_privilege_escalation=False,
                            capabilities=client.V1Capabilities(drop=["ALL"]),
                        ),
                    )
                ],
            ),
        )

    async def until(check, what: str) -> None:
        deadline = time.monotonic() + 30
        while not check():
            assert time.monotonic() < deadline, f"the watch never saw {what}"
            await asyncio.sleep(0.1)

    await core.create_namespaced_pod(ns, body("before", "u0", "1"))  # listed, not watched
    with GpuWatch(kube.kubeconfig, ns, PodGpus(POLICY, GROUPS)) as watch:
        assert watch.snapshot().by_group == {"eu-researchers": 1}
        await core.create_namespaced_pod(ns, body("after", "u1", "2"))
        await until(lambda: watch.snapshot().by_group == {"eu-researchers": 3}, "the second pod")
        await core.delete_namespaced_pod("before", ns, grace_period_seconds=0)
        await until(lambda: watch.snapshot().by_group == {"eu-researchers": 2}, "the first pod go")
    assert watch.snapshot().peak == {"eu-researchers": 3}
