"""The chart's `scheduling` values: user scheduler, PriorityClasses, placeholders (real helm).

Rendered with the real Helm 3.18 and 4.1 binaries; the objects are validated
strictly against Kubernetes' schemas, and the hub's configuration is built
from the rendered values by the same module the chart's config file calls.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from traitlets.config import Config

from sovereign_hub.hubconfig import configure
from sovereign_hub.spawner.security import restricted_violations
from tests.conftest import ROOT
from tests.test_helm_chart import (
    CHART,
    HERE,
    by_kind,
    example_policy_values,
    helm_binary,
    pod_specs,
    render,
    run,
)
from tests.test_hubconfig import chart_values, pod_site

__all__ = ["example_policy_values"]  # a fixture, shared with the chart tests
VALUES = HERE / "scheduling-values.yaml"
SCHEDULER = "rel-sovereign-hub-user-scheduler"


@pytest.fixture(scope="module")
def docs(example_policy_values):
    return render(helm_binary("4.1"), example_policy_values, VALUES)


def named(docs, kind, name):
    (found,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return found


def test_both_helms_render_the_same_scheduling_objects(example_policy_values, docs):
    other = render(helm_binary("3.18"), example_policy_values, VALUES)
    names = lambda ds: sorted((d["kind"], d["metadata"]["name"]) for d in ds)  # noqa: E731
    assert names(other) == names(docs)
    assert {
        ("PriorityClass", "rel-sovereign-hub-default-priority"),
        ("PriorityClass", "rel-sovereign-hub-user-placeholder-priority"),
        ("Deployment", SCHEDULER),
        ("ConfigMap", SCHEDULER),
        ("StatefulSet", "rel-sovereign-hub-placeholder-eu-gpu-a100"),
        ("StatefulSet", "rel-sovereign-hub-placeholder-eu-gpu-slice"),
    } <= set(names(docs))


@pytest.mark.parametrize("kubernetes", ["1.30.0", "1.33.0", "1.37.0"])
def test_every_scheduling_object_validates_strictly(docs, kubernetes):
    for doc in docs:
        if doc["kind"] not in ("ServiceMonitor", "HTTPRoute"):
            kubernetes_validate.validate(doc, kubernetes, strict=True)


def test_the_new_pods_meet_the_restricted_standard_pinned_by_digest(docs):
    specs = dict(pod_specs(docs))
    for name in (
        f"Deployment/{SCHEDULER}",
        "StatefulSet/rel-sovereign-hub-placeholder-eu-gpu-a100",
    ):
        spec = specs[name]
        assert restricted_violations(spec, name) == []
        for c in spec["containers"]:
            assert "@sha256:" in c["image"]
            assert ":" not in c["image"].split("@")[0].split("/")[-1]  # no tag beside it
            assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_priority_classes_put_users_above_placeholders_that_never_preempt(docs):
    users = named(docs, "PriorityClass", "rel-sovereign-hub-default-priority")
    holders = named(docs, "PriorityClass", "rel-sovereign-hub-user-placeholder-priority")
    assert (users["value"], users["globalDefault"]) == (10, False)
    assert (holders["value"], holders["preemptionPolicy"]) == (-10, "Never")


def test_a_placeholder_asks_what_one_server_of_its_profile_is_guaranteed(docs):
    sts = named(docs, "StatefulSet", "rel-sovereign-hub-placeholder-eu-gpu-a100")
    assert sts["spec"]["replicas"] == 2
    spec = sts["spec"]["template"]["spec"]
    assert spec["priorityClassName"] == "rel-sovereign-hub-user-placeholder-priority"
    assert spec["schedulerName"] == SCHEDULER
    assert spec["terminationGracePeriodSeconds"] == 0
    (pause,) = spec["containers"]
    assert pause["image"].startswith("registry.k8s.io/pause@sha256:")
    # examples/policy.yaml: gpu-a100 guarantees 4 CPUs, 32Gi, one A100 (nvidia.com/gpu).
    assert pause["resources"]["requests"] == {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": 1}
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-central-1"]},
        {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-SXM4-40GB"]},
    ]
    slice_ = named(docs, "StatefulSet", "rel-sovereign-hub-placeholder-eu-gpu-slice")
    (c,) = slice_["spec"]["template"]["spec"]["containers"]
    assert c["resources"]["limits"]["nvidia.com/mig-1g.5gb"] == 1


def test_the_user_scheduler_packs_under_its_own_name_with_the_schedulers_rbac(docs):
    config = yaml.safe_load(named(docs, "ConfigMap", SCHEDULER)["data"]["config.yaml"])
    assert config["kind"] == "KubeSchedulerConfiguration"
    (profile,) = config["profiles"]
    assert profile["schedulerName"] == SCHEDULER
    (fit,) = profile["pluginConfig"]
    assert fit["name"] == "NodeResourcesFit"
    assert fit["args"]["scoringStrategy"]["type"] == "MostAllocated"
    assert config["leaderElection"]["resourceNamespace"] == "hub"
    bound = {
        b["roleRef"]["name"]
        for b in by_kind(docs, "ClusterRoleBinding")
        if b["subjects"][0]["name"] == SCHEDULER
    }
    assert bound == {"system:kube-scheduler", "system:volume-scheduler"}
    role = named(docs, "Role", SCHEDULER)
    assert role["rules"][1]["resourceNames"] == [f"{SCHEDULER}-lock"]
    deployment = named(docs, "Deployment", SCHEDULER)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--config=/etc/user-scheduler/config.yaml" in container["command"]


def test_the_hub_sends_user_pods_to_the_user_scheduler_at_their_priority(
    tmp_path, example_policy_values
):
    values = chart_values(tmp_path, example_policy_values, VALUES)
    c = Config()
    configure(c, values, pod_site(tmp_path))
    assert c.SovereignSpawner.scheduler_name == SCHEDULER
    assert c.SovereignSpawner.priority_class_name == "rel-sovereign-hub-default-priority"
    assert c.SovereignSpawner.gpu_queue_user_priority == 10


def test_by_default_nothing_of_scheduling_is_rendered_or_configured(tmp_path):
    docs = render(helm_binary("4.1"))
    assert not by_kind(docs, "PriorityClass")
    assert not by_kind(docs, "StatefulSet")
    values = chart_values(tmp_path)
    c = Config()
    configure(c, values, pod_site(tmp_path))
    for trait in ("scheduler_name", "priority_class_name", "gpu_queue_user_priority"):
        assert trait not in c.SovereignSpawner


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ("scheduling.userPlaceholder.enabled=true",),
            "scheduling.userPlaceholder.enabled needs scheduling.podPriority.enabled",
        ),
        (
            ("scheduling.podPriority.enabled=true", "scheduling.podPriority.defaultPriority=-20"),
            "scheduling.podPriority.defaultPriority (-20) must be above userPlaceholderPriority",
        ),
        (
            ("scheduling.userPlaceholder.pools[0].region=mars",),
            'scheduling.userPlaceholder.pools[0].region: "mars" is not a region of the policy; '
            "known: eu",
        ),
        (
            ("scheduling.userPlaceholder.pools[0].profile=cpu-small",),
            'scheduling.userPlaceholder.pools[0].profile: "cpu-small" requests no GPU',
        ),
        (
            ("scheduling.userPlaceholder.pools[0].profile=gpu-h100",),
            'scheduling.userPlaceholder.pools[0].profile: "gpu-h100" is not a profile of the '
            "policy",
        ),
    ],
)
def test_bad_scheduling_values_fail_naming_the_value(example_policy_values, sets, message):
    args = ["template", "rel", str(CHART), "--namespace", "hub", "-f", str(example_policy_values),
            "-f", str(VALUES), "--set", "allowUnreleasedImages=true"]  # fmt: skip
    if sets[0].startswith("scheduling.userPlaceholder.enabled"):
        args += ["--set", "scheduling.podPriority.enabled=false"]
    for s in sets:
        args += ["--set", s]
    done = run(helm_binary("4.1"), *args)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


@pytest.fixture(scope="module")
def regional_values(tmp_path_factory) -> Path:
    """The example policy with region ``us`` in a cluster of its own, and an A100 pool in each
    region."""
    path = tmp_path_factory.mktemp("regional") / "values.yaml"
    policy = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    policy["regions"]["us"]["cluster"] = {
        "name": "us-east", "kubeconfigSecret": {"name": "us-east-kubeconfig"}}  # fmt: skip
    policy["profiles"]["gpu-a100"]["regions"] = ["eu", "us"]
    scheduling = yaml.safe_load(VALUES.read_text())["scheduling"]
    scheduling["userPlaceholder"]["pools"] = [
        {"region": "eu", "profile": "gpu-a100", "replicas": 1},
        {"region": "us", "profile": "gpu-a100", "replicas": 1},
    ]
    path.write_text(yaml.safe_dump({"policy": policy, "scheduling": scheduling}))
    return path


@pytest.mark.parametrize("version", ["3.18", "4.1"])
def test_no_placeholder_is_rendered_for_a_region_in_its_own_cluster(regional_values, version):
    """The hub's chart installs into the hub's cluster, where region us has no node: a
    placeholder for it there would hold nothing, so only eu's pool is rendered."""
    docs = render(helm_binary(version), regional_values)
    pools = sorted(d["metadata"]["name"] for d in by_kind(docs, "StatefulSet"))
    assert pools == ["rel-sovereign-hub-placeholder-eu-gpu-a100"]


def test_notes_say_which_placeholder_pools_were_not_installed(regional_values):
    """NOTES.txt through `helm install --dry-run=client` of Helm 4.1 (Helm 3.18's client dry
    run insists on reaching a cluster)."""
    done = run(helm_binary("4.1"), "install", "rel", str(CHART), "--dry-run=client",
               "--namespace", "hub", "-f", str(regional_values),
               "--set", "allowUnreleasedImages=true")  # fmt: skip
    assert done.returncode == 0, done.stderr
    notes = " ".join(done.stdout.split("NOTES:", 1)[1].split())
    assert (
        "NOTE: scheduling.userPlaceholder.pools[1] (region us, profile gpu-a100) is not "
        "installed: region us runs in its own cluster (us-east)"
    ) in notes
    assert "pools[0]" not in notes
