"""The pods and claims SovereignSpawner asks KubeSpawner for, as full manifests.

In the spirit of KubeSpawner's test_objects.py: each rule is pinned by the
literal manifest a reviewer can read. KubeSpawner builds the pod (``_mock``
mode: no API server); the plan comes from the real policy decision.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime

import pytest
from jupyterhub.utils import maybe_future
from kubernetes_asyncio.client import (
    V1ConfigMapVolumeSource,
    V1Container,
    V1ContainerPort,
    V1HostPathVolumeSource,
    V1PodSecurityContext,
    V1SecurityContext,
    V1Sysctl,
    V1Volume,
)

from sovereign_hub.policy import Identity, SpawnRequest, Usage, decide, load_policy
from sovereign_hub.spawner import SovereignSpawner
from sovereign_hub.spawner.overlay import Home, plan_traits
from sovereign_hub.spawner.pvc import home_claim_name, make_home_pvc
from sovereign_hub.spawner.security import manifest_dict, restricted_violations, security_view
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("offline_kubeconfig")

POLICY = load_policy(ROOT / "examples" / "policy.yaml").policy
NOW = datetime(2026, 11, 26, tzinfo=UTC)
TORCH = "quay.io/jupyter/pytorch-notebook@sha256:69c72823a4e0dbee17114bbe44d0377bc9a39504a76f6314995f7d5bfaa98d60"
BASE = "quay.io/jupyter/base-notebook@sha256:876e3c3e40c4f0a25d3a16223a158a2d582b1ad77ac94269d43a5f6256eb4eec"


def plan_for(profile: str, groups=("eu-researchers",), region=None):
    decision = decide(
        Identity("ana", frozenset(groups)),
        SpawnRequest(profile, NOW, region=region),
        POLICY,
        Usage(),
    )
    assert decision.allowed, decision
    return decision.plan


def spawner(**config) -> SovereignSpawner:
    return SovereignSpawner(_mock=True, namespace="hub", **config)


async def pod_for(s: SovereignSpawner, plan) -> dict:
    for name, value in plan_traits(
        plan, s._baseline, Home(home_claim_name("ana", plan.region), s.home_mount_path)
    ).items():
        setattr(s, name, value)
    # As KubeSpawner does: build the pod, then pass it through modify_pod_hook.
    pod = await s.get_pod_manifest()
    return manifest_dict(await maybe_future(s.modify_pod_hook(s, pod)))


async def test_gpu_pod_manifest():
    pod = await pod_for(spawner(), plan_for("gpu-a100"))
    spec = pod["spec"]
    container = spec["containers"][0]
    assert container["image"] == TORCH
    assert container["resources"] == {
        "limits": {"cpu": 8.0, "memory": 68719476736, "nvidia.com/gpu": "1"},
        "requests": {"cpu": 4.0, "memory": 34359738368, "nvidia.com/gpu": "1"},
    }
    assert spec["affinity"] == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "topology.kubernetes.io/region",
                                "operator": "In",
                                "values": ["eu-central-1"],
                            },
                            {
                                "key": "nvidia.com/gpu.product",
                                "operator": "In",
                                "values": ["NVIDIA-A100-SXM4-40GB"],
                            },
                        ]
                    }
                ]
            }
        }
    }
    assert spec["tolerations"] == [
        {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
    ]
    labels = pod["metadata"]["labels"]
    assert {k: v for k, v in labels.items() if k.startswith("sovereign-hub.io/")} == {
        "sovereign-hub.io/region": "eu",
        "sovereign-hub.io/profile": "gpu-a100",
        "sovereign-hub.io/channel": "pytorch",
        "sovereign-hub.io/gpu-type": "a100",
    }
    annotations = dict(pod["metadata"]["annotations"])
    # One id per start, so a retried create knows its own pod (spawner/transient.py).
    assert len(annotations.pop("sovereign-hub.io/spawn-id")) == 32
    assert {k: v for k, v in annotations.items() if k.startswith("sovereign-hub.io/")} == {
        "sovereign-hub.io/image-digest": "sha256:69c72823a4e0dbee17114bbe44d0377bc9a39504a76f6314995f7d5bfaa98d60",
        "sovereign-hub.io/image": TORCH,
        "sovereign-hub.io/image-version": "2026.11",
        "sovereign-hub.io/gpu-quota-group": "eu-researchers",
    }
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SOVEREIGN_HUB_REGION"] == "eu"
    assert env["SOVEREIGN_HUB_GPU_TYPE"] == "a100"
    assert spec["volumes"][-1] == {
        "name": "sovereign-home",
        "persistentVolumeClaim": {"claimName": "home-ana-eu"},
    }
    assert container["volumeMounts"][-1] == {"mountPath": "/home/jovyan", "name": "sovereign-home"}


async def test_cpu_pod_after_a_gpu_pod_inherits_nothing():
    s = spawner()
    await pod_for(s, plan_for("gpu-a100"))
    pod = await pod_for(s, plan_for("cpu-small", groups=("us-analysts",)))
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert container["image"] == BASE
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "nvidia.com/gpu" not in container["resources"]["requests"]
    assert "tolerations" not in spec or spec["tolerations"] == []
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {
            "matchExpressions": [
                {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["us-east-1"]}
            ]
        }
    ]
    assert "sovereign-hub.io/gpu-type" not in pod["metadata"]["labels"]
    assert "SOVEREIGN_HUB_GPU_TYPE" not in {e["name"] for e in container["env"]}
    assert spec["volumes"][-1]["persistentVolumeClaim"]["claimName"] == "home-ana-us"
    assert len([v for v in spec["volumes"] if v["name"] == "sovereign-home"]) == 1


async def test_admin_config_is_kept_and_combined():
    s = spawner(
        extra_labels={"team": "ml"},
        environment={"PIP_INDEX_URL": "https://pypi.internal/simple"},
        tolerations=[
            {"key": "dedicated", "operator": "Equal", "value": "notebooks", "effect": "NoSchedule"}
        ],
        node_affinity_required=[
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]},
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["b"]}]},
        ],
        volumes=[{"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}],
        volume_mounts=[{"name": "shared", "mountPath": "/shared"}],
    )
    pod = await pod_for(s, plan_for("gpu-slice"))
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert pod["metadata"]["labels"]["team"] == "ml"
    assert {"name": "PIP_INDEX_URL", "value": "https://pypi.internal/simple"} in container["env"]
    assert container["resources"]["limits"]["nvidia.com/mig-1g.5gb"] == "1"
    assert [t["key"] for t in spec["tolerations"]] == ["dedicated", "nvidia.com/gpu"]
    # Each admin term must also meet the region and GPU requirements (terms are ORed).
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert [[e["key"] for e in t["matchExpressions"]] for t in terms] == [
        ["pool", "topology.kubernetes.io/region", "nvidia.com/gpu.product"],
        ["pool", "topology.kubernetes.io/region", "nvidia.com/gpu.product"],
    ]
    assert [v["name"] for v in spec["volumes"]] == ["shared", "sovereign-home"]
    # The baseline itself is untouched for the next spawn.
    assert s._baseline["extra_labels"] == {"team": "ml"}


async def test_every_user_pod_meets_the_restricted_standard():
    for profile in ("cpu-small", "gpu-a100", "gpu-slice"):
        pod = await pod_for(spawner(), plan_for(profile))
        assert restricted_violations(pod["spec"]) == []
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}


async def test_a_privileged_override_is_refused():
    s = spawner(privileged=True)
    with pytest.raises(
        Exception,
        match=re.escape(
            "restricted Pod Security Standard: spec.containers[0] (notebook).securityContext.privileged must not be true"
        ),
    ):
        await pod_for(s, plan_for("cpu-small"))


async def test_the_check_is_configured_under_the_spawners_own_name():
    from traitlets.config import Config

    config = Config()
    config.SovereignSpawner.enforce_restricted = False
    config.SovereignSpawner.privileged = True
    pod = await pod_for(
        SovereignSpawner(_mock=True, namespace="hub", config=config), plan_for("cpu-small")
    )
    assert pod["spec"]["containers"][0]["securityContext"]["privileged"] is True


def as_written(kind: str, change):
    """An admin's modify_pod_hook, plain or a coroutine function (KubeSpawner takes both)."""

    def plain(spawner, pod):
        change(pod)
        return pod

    async def coroutine(spawner, pod):
        change(pod)
        return pod

    return plain if kind == "plain" else coroutine


def make_privileged(pod):
    context = pod.spec.containers[0].security_context
    if isinstance(context, dict):
        context["privileged"] = True
    else:
        context.privileged = True


@pytest.mark.parametrize("kind", ["plain", "coroutine"])
async def test_an_admin_hook_cannot_make_the_pod_privileged(kind):
    hook = as_written(kind, make_privileged)
    with pytest.raises(Exception, match=r"securityContext\.privileged must not be true"):
        await pod_for(spawner(modify_pod_hook=hook), plan_for("cpu-small"))


@pytest.mark.parametrize("kind", ["plain", "coroutine"])
async def test_an_admin_hook_still_runs(kind):
    hook = as_written(kind, lambda pod: pod.metadata.labels.update(hooked="yes"))
    pod = await pod_for(spawner(modify_pod_hook=hook), plan_for("cpu-small"))
    assert pod["metadata"]["labels"]["hooked"] == "yes"


async def test_without_an_async_admin_hook_the_check_needs_no_task():
    """KubeSpawner awaits the hook through maybe_future: a plain return spares a task."""
    s = spawner()
    pod = {"spec": {"containers": [{"name": "notebook", "securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}}]}}  # fmt: skip
    assert s.modify_pod_hook(s, pod) is pod


def test_home_claim_is_per_user_and_region():
    assert home_claim_name("Ana.Müller@corp", "eu") != home_claim_name("Ana.Müller@corp", "us")
    assert make_home_pvc(
        name="home-ana-eu", username="ana", region="eu", storage_class="ssd-eu", size="10Gi"
    ) == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "home-ana-eu",
            "labels": {
                "app.kubernetes.io/component": "singleuser-storage",
                "component": "singleuser-storage",
                "hub.jupyter.org/username": "ana",
                "sovereign-hub.io/region": "eu",
            },
            "annotations": {"sovereign-hub.io/username": "ana"},
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "ssd-eu",
            "resources": {"requests": {"storage": "10Gi"}},
        },
    }


def test_profile_list_is_refused():
    with pytest.raises(Exception, match=r"leave KubeSpawner\.profile_list empty"):
        SovereignSpawner(_mock=True, profile_list=[{"display_name": "x"}])


@pytest.mark.parametrize(
    ("mutate", "violation"),
    [
        (lambda s: s.update(hostNetwork=True), "spec.hostNetwork must not be true"),
        (lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "uses hostPath"),
        (
            lambda s: s["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
            "allowPrivilegeEscalation must be false",
        ),
        (
            lambda s: s["containers"][0]["securityContext"]["capabilities"].update(
                add=["SYS_ADMIN"]
            ),
            "may only hold NET_BIND_SERVICE",
        ),
        (
            lambda s: s["containers"][0]["securityContext"].update(runAsUser=0),
            "runAsUser must not be 0",
        ),
        (
            lambda s: s["securityContext"].update(seccompProfile={"type": "Unconfined"}),
            "seccompProfile.type must be RuntimeDefault",
        ),
        (
            lambda s: s["containers"][0].update(ports=[{"containerPort": 8888, "hostPort": 8888}]),
            "hostPort 8888 is not allowed",
        ),
    ],
)
async def test_restricted_checker_catches_each_rule(mutate, violation):
    spec = copy.deepcopy((await pod_for(spawner(), plan_for("cpu-small")))["spec"])
    mutate(spec)
    assert any(violation in v for v in restricted_violations(spec)), restricted_violations(spec)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda spec: spec.volumes.append(
            V1Volume(name="h", host_path=V1HostPathVolumeSource(path="/"))
        ),
        lambda spec: spec.volumes.append(
            V1Volume(name="c", config_map=V1ConfigMapVolumeSource(name="settings"))
        ),
        lambda spec: spec.containers[0].ports.append(
            V1ContainerPort(container_port=8888, host_port=8888)
        ),
        lambda spec: setattr(spec.containers[0], "ports", None),
        lambda spec: setattr(
            spec,
            "security_context",
            V1PodSecurityContext(
                run_as_user=0, sysctls=[V1Sysctl(name="kernel.msgmax", value="1")]
            ),
        ),
        lambda spec: spec.init_containers.append(
            V1Container(
                name="setup",
                image="busybox",
                security_context=V1SecurityContext(privileged=True),
            )
        ),
    ],
)
async def test_the_checks_view_of_a_client_model_pod_is_its_manifest(mutate):
    """An admin hook may add client models (volumes, ports, containers). The restricted check
    reads them without serialising the whole pod; it must judge exactly what the manifest
    sent to Kubernetes will hold."""
    s = spawner()
    for name, value in plan_traits(
        plan_for("cpu-small"), s._baseline, Home("home-ana-eu", s.home_mount_path)
    ).items():
        setattr(s, name, value)
    pod = await s.get_pod_manifest()
    pod.spec.init_containers = pod.spec.init_containers or []
    mutate(pod.spec)
    assert restricted_violations(security_view(pod)) == restricted_violations(
        manifest_dict(pod)["spec"]
    )


async def test_a_pre_spawn_hook_adds_to_the_plan_and_sees_no_earlier_plan():
    """JupyterHub runs pre_spawn_hook before start(). What it adds to the traits the plan
    manages is kept for that spawn; the policy's own settings still win; and the hook
    starts from the admin's values, never from the previous spawn's GPU settings."""
    seen = []

    async def hook(spawner):
        seen.append((list(spawner.tolerations), dict(spawner.extra_resource_limits)))
        spawner.environment["TEAM_TOKEN_FILE"] = "/secrets/team"
        spawner.volumes.append({"name": "team", "secret": {"secretName": "team"}})
        spawner.volume_mounts.append({"name": "team", "mountPath": "/secrets"})
        spawner.image = "docker.io/library/python:latest"  # not the hook's to choose

    s = spawner(environment={"ADMIN": "1"}, pre_spawn_hook=hook)
    for profile in ("gpu-a100", "cpu-small"):
        await s.run_pre_spawn_hook()
        s.apply_plan(plan_for(profile))
        pod = manifest_dict(await maybe_future(s.modify_pod_hook(s, await s.get_pod_manifest())))
        container = pod["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TEAM_TOKEN_FILE"] == "/secrets/team"
        assert env["ADMIN"] == "1"
        assert env["SOVEREIGN_HUB_PROFILE"] == profile
        assert [v["name"] for v in pod["spec"]["volumes"]] == ["team", "sovereign-home"]
        assert container["image"] == (TORCH if profile == "gpu-a100" else BASE)
    # Before the CPU spawn the hook saw the admin's values, not the GPU plan's.
    assert seen == [([], {}), ([], {})]
    assert s._baseline["environment"] == {"ADMIN": "1"}
    assert s._baseline["volumes"] == []


async def test_without_a_pre_spawn_hook_the_admin_baseline_is_used():
    s = spawner(environment={"ADMIN": "1"})
    assert s.run_pre_spawn_hook() is None
    s.apply_plan(plan_for("cpu-small"))
    assert s.environment["ADMIN"] == "1"
    assert s.environment["SOVEREIGN_HUB_PROFILE"] == "cpu-small"


async def test_a_missing_policy_refuses_the_spawn_naming_the_file(tmp_path):
    from sovereign_hub.spawner import SpawnRefused

    missing = tmp_path / "policy.yaml"
    s = spawner(policy_file=str(missing))
    with pytest.raises(SpawnRefused) as refused:
        s.policy()
    assert refused.value.status_code == 500
    assert refused.value.jupyterhub_message == (
        "The hub's policy cannot be used (missing or invalid); ask your administrator to run "
        f"`sovhub policy check`. {missing}: (document): cannot read the file: "
        "No such file or directory"
    )
