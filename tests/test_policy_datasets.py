"""Datasets in the policy: what a spawn mounts, where, and how; pure, no cluster."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sovereign_hub.cli import main
from sovereign_hub.policy import Allowed, Identity, PolicyError, SpawnRequest, Usage, decide
from sovereign_hub.policy.datasets import dataset_mounts
from tests.conftest import examples
from tests.policies import (
    TEXT,
    climate_dataset,
    datasets_section,
    eu_object_store_dataset,
    policy,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
EU = {"country": ("DE",)}

DATASETS = datasets_section(
    climate_dataset("eu-research", "us-analysts", writers=("gpu-pool",)),
    eu_object_store_dataset("patients", "Patient records (EU only)", "eu-research", "gpu-pool"),
)
P = policy(TEXT + DATASETS)


def plan(*groups: str, profile: str = "cpu", region: str | None = None):
    decision = decide(
        Identity("ana", frozenset(groups), EU),
        SpawnRequest(profile, NOW, region=region),
        P,
        Usage(),
    )
    assert isinstance(decision, Allowed), decision
    return decision.plan


def mounted(p) -> list[tuple[str, str, str, str]]:
    return [(m.dataset, m.region, m.mode, m.source_kind) for m in p.datasets]


def test_an_eu_spawn_mounts_the_eu_sources_read_only_by_default():
    p = plan("eu-research")
    assert mounted(p) == [
        ("climate", "eu", "read-only", "persistentVolumeClaim"),
        ("patients", "eu", "read-only", "csi"),
    ]
    climate, patients = p.datasets
    assert climate.mount_path == "/data/climate"
    assert climate.read_only
    assert dict(climate.source) == {"claimName": "climate-eu"}
    assert dict(patients.source) == {
        "driver": "s3.csi.aws.com",
        "volumeAttributes": {"bucketName": "patients-eu"},
        "nodePublishSecretName": "patients-eu-credentials",
    }


def test_a_dataset_is_never_mounted_outside_its_regions():
    # us-analysts may use climate (in eu and us) but patients lives only in eu.
    assert mounted(plan("us-analysts")) == [("climate", "us", "read-only", "nfs")]
    # gpu-pool has access to patients, yet a spawn in the US does not get it.
    assert [m.dataset for m in plan("gpu-pool", profile="gpu2", region="us").datasets] == [
        "climate"
    ]
    assert "patients" in [m.dataset for m in plan("gpu-pool", profile="gpu2", region="eu").datasets]


def test_read_write_only_where_granted_and_the_widest_grant_wins():
    assert mounted(plan("eu-research", profile="gpu2", region="eu"))[0][2] == "read-only"
    both = plan("eu-research", "gpu-pool", profile="gpu2", region="eu")
    assert [(m.dataset, m.mode) for m in both.datasets] == [
        ("climate", "read-write"),
        ("patients", "read-only"),
    ]


def test_a_groups_access_counts_only_in_the_regions_the_group_grants():
    # In the US, only us-analysts (read-only) counts: eu-research grants no US region.
    modes = dataset_mounts(P, ["eu-research", "us-analysts"], "us")
    assert [(m.dataset, m.mode) for m in modes] == [("climate", "read-only")]
    assert dataset_mounts(P, ["eu-research"], "us") == ()


def test_groups_without_access_mount_nothing():
    assert dataset_mounts(P, ["unrelated"], "eu") == ()
    assert dataset_mounts(P, [], "eu") == ()


def test_a_policy_without_datasets_mounts_nothing():
    decision = decide(
        Identity("ana", frozenset({"eu-research"}), EU), SpawnRequest("cpu", NOW), policy(), Usage()
    )
    assert isinstance(decision, Allowed)
    assert decision.plan.datasets == ()


@pytest.mark.parametrize(
    ("change", "path", "text"),
    [
        (
            ("      us:\n        nfs: {server: nfs.us.internal, path: /exports/climate}\n", ""),
            "datasets.climate.sources",
            "has no source for region 'us', which the dataset names",
        ),
        (
            ("      - group: us-analysts\n", "      - group: us-analysts\n        mode: admin\n"),
            "datasets.climate.access[1].mode",
            "must be 'read-only' or 'read-write', got 'admin'",
        ),
        (
            ("    regions: [eu]\n    sources:", "    regions: [us]\n    sources:"),
            "datasets.patients.access[0].group",
            "group 'eu-research' can run servers in eu, and dataset 'patients' is only in us; "
            "the grant can never be used",
        ),
    ],
)
def test_check_refuses_with_file_path_and_allowed_values(change, path, text):
    old, new = change
    assert old in DATASETS
    with pytest.raises(PolicyError) as info:
        policy(TEXT + DATASETS.replace(old, new))
    rendered = str(info.value)
    assert "test-policy.yaml:" in rendered
    assert any(
        p.message.startswith(text) or text in p.message
        for p in info.value.problems
        if p.render("f").split(": ")[1] == path
    ), rendered


def test_explain_shows_what_each_region_would_mount(capsys, tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(TEXT + DATASETS)
    argv = ["policy", "explain", str(path), "--user", "ana", "--groups", "us-analysts"]
    assert main([*argv, "--profile", "cpu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["entitlements"][0]["datasets"] == {
        "us": [{"dataset": "climate", "mountPath": "/data/climate", "mode": "read-only"}]
    }
    assert data["decision"]["plan"]["datasets"] == [
        {
            "dataset": "climate",
            "region": "us",
            "mount_path": "/data/climate",
            "mode": "read-only",
            "source_kind": "nfs",
            "source": {"server": "nfs.us.internal", "path": "/exports/climate"},
        }
    ]
    assert main([*argv, "--profile", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "    datasets in us: climate (read-only)" in text
    assert "  dataset:   climate at /data/climate (read-only, nfs in us)" in text
    assert "patients" not in text


@settings(max_examples=examples(300), deadline=None)
@given(
    groups=st.frozensets(st.sampled_from([*P.groups, "unrelated"]), max_size=4),
    profile=st.sampled_from(list(P.profiles)),
    region=st.sampled_from([None, *P.regions]),
)
def test_every_mount_is_of_the_spawns_region_and_granted_as_mounted(groups, profile, region):
    decision = decide(
        Identity("ana", groups, EU), SpawnRequest(profile, NOW, region=region), P, Usage()
    )
    if not isinstance(decision, Allowed):
        return
    where = decision.plan.region
    for mount in decision.plan.datasets:
        dataset = P.datasets[mount.dataset]
        # Never outside the dataset's regions, and always from the spawn region's source.
        assert mount.region == where
        assert where in dataset.regions
        assert dict(mount.source) == dict(dataset.sources[where].settings)
        counting = [
            a.mode
            for a in dataset.access
            if a.group in groups and where in P.groups[a.group].regions
        ]
        assert counting, "mounted without a grant that counts in this region"
        assert (mount.mode == "read-write") == ("read-write" in counting)
    # And nothing the user's groups are granted in this region is left out.
    expected = {
        name
        for name, d in P.datasets.items()
        if where in d.regions
        and any(a.group in groups and where in P.groups[a.group].regions for a in d.access)
    }
    assert {m.dataset for m in decision.plan.datasets} == expected
