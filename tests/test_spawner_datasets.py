"""Dataset mounts in the pod: the volumes and mounts the overlay adds, as full dicts.

KubeSpawner builds the pod (``_mock`` mode: no API server); the plan comes from
the real policy decision over the example policy plus a ``datasets`` section.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from jupyterhub.utils import maybe_future

from sovereign_hub.policy import Identity, SpawnRequest, Usage, decide, parse_policy
from sovereign_hub.spawner import SovereignSpawner
from sovereign_hub.spawner.overlay import Home, MountConflict, dataset_volume, plan_traits
from sovereign_hub.spawner.security import manifest_dict, restricted_violations
from tests.conftest import ROOT
from tests.policies import climate_dataset, datasets_section, eu_object_store_dataset

pytestmark = pytest.mark.usefixtures("offline_kubeconfig")

DATASETS = datasets_section(
    climate_dataset("eu-researchers", writers=("us-analysts",)),
    eu_object_store_dataset("scans", "Scans (EU object store)", "eu-researchers"),
)
POLICY = parse_policy(
    (ROOT / "examples" / "policy.yaml").read_text() + DATASETS, "policy.yaml"
).policy
NOW = datetime(2026, 11, 26, tzinfo=UTC)


def plan_for(group: str, profile: str = "cpu-small"):
    decision = decide(
        Identity("ana", frozenset({group})), SpawnRequest(profile, NOW), POLICY, Usage()
    )
    assert decision.allowed, decision
    return decision.plan


async def pod_for(s: SovereignSpawner, plan) -> dict:
    home = Home(f"home-ana-{plan.region}", s.home_mount_path)
    for name, value in plan_traits(plan, s._baseline, home).items():
        setattr(s, name, value)
    pod = await s.get_pod_manifest()
    return manifest_dict(await maybe_future(s.modify_pod_hook(s, pod)))


def test_each_kind_of_source_as_a_pod_volume():
    eu, us = plan_for("eu-researchers"), plan_for("us-analysts")
    assert [dataset_volume(m) for m in eu.datasets] == [
        {
            "name": "sovereign-dataset-climate",
            "persistentVolumeClaim": {"claimName": "climate-eu", "readOnly": True},
        },
        {
            "name": "sovereign-dataset-scans",
            "csi": {
                "driver": "s3.csi.aws.com",
                "readOnly": True,
                "volumeAttributes": {"bucketName": "scans-eu"},
                "nodePublishSecretRef": {"name": "scans-eu-credentials"},
            },
        },
    ]
    # read-write: no readOnly at the source; NFS through the NFS CSI driver.
    assert [dataset_volume(m) for m in us.datasets] == [
        {
            "name": "sovereign-dataset-climate",
            "csi": {
                "driver": "nfs.csi.k8s.io",
                "volumeAttributes": {"server": "nfs.us.internal", "share": "/exports/climate"},
            },
        }
    ]


async def test_the_pod_mounts_the_regions_datasets_read_only_and_stays_restricted():
    pod = await pod_for(SovereignSpawner(_mock=True, namespace="hub"), plan_for("eu-researchers"))
    spec = pod["spec"]
    assert [v["name"] for v in spec["volumes"]] == [
        "sovereign-home",
        "sovereign-dataset-climate",
        "sovereign-dataset-scans",
    ]
    assert spec["containers"][0]["volumeMounts"] == [
        {"mountPath": "/home/jovyan", "name": "sovereign-home"},
        {"mountPath": "/data/climate", "name": "sovereign-dataset-climate", "readOnly": True},
        {"mountPath": "/data/scans", "name": "sovereign-dataset-scans", "readOnly": True},
    ]
    assert restricted_violations(spec) == []


async def test_a_later_spawn_in_another_region_keeps_none_of_the_earlier_datasets():
    s = SovereignSpawner(
        _mock=True,
        namespace="hub",
        volumes=[{"name": "shared", "emptyDir": {}}],
        volume_mounts=[{"name": "shared", "mountPath": "/shared"}],
    )
    await pod_for(s, plan_for("eu-researchers"))
    pod = await pod_for(s, plan_for("us-analysts"))
    spec = pod["spec"]
    assert [v["name"] for v in spec["volumes"]] == [
        "shared",
        "sovereign-home",
        "sovereign-dataset-climate",
    ]
    assert spec["volumes"][-1]["csi"]["driver"] == "nfs.csi.k8s.io"
    assert spec["containers"][0]["volumeMounts"][-1] == {
        "mountPath": "/data/climate",
        "name": "sovereign-dataset-climate",
        "readOnly": False,
    }
    assert restricted_violations(spec) == []


async def test_a_user_without_dataset_access_gets_only_the_home_volume():
    plan = decide(
        Identity("ana", frozenset({"eu-researchers"})),
        SpawnRequest("cpu-small", NOW),
        parse_policy((ROOT / "examples" / "policy.yaml").read_text()).policy,
        Usage(),
    ).plan  # type: ignore[union-attr]
    pod = await pod_for(SovereignSpawner(_mock=True, namespace="hub"), plan)
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["sovereign-home"]


def test_a_dataset_at_the_home_mount_path_is_refused_naming_both_volumes_and_the_settings():
    plan = plan_for("eu-researchers")
    with pytest.raises(MountConflict) as info:
        plan_traits(plan, {}, Home("home-ana-eu", "/data/climate"))
    assert str(info.value).startswith(
        "volumes 'sovereign-home' and 'sovereign-dataset-climate' would both be mounted at "
        "/data/climate; "
    )
    assert "mountPath in the policy, or SovereignSpawner.home_mount_path" in str(info.value)
    # A dataset inside the home folder is a nested mount, which Kubernetes allows.
    traits = plan_traits(plan, {}, Home("home-ana-eu", "/data"))
    assert [m["mountPath"] for m in traits["volume_mounts"]] == [
        "/data",
        "/data/climate",
        "/data/scans",
    ]
