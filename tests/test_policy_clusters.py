"""A region may name its own Kubernetes cluster; omitted, it is the hub's own.

The refusals (two ways in, none, a relative path, the reserved name, one name
reached two ways) are pinned by documents 63-65 in ``policy_corpus/``.
"""

from __future__ import annotations

import pytest
import yaml

from sovereign_hub.policy import HUB_CLUSTER, parse_policy
from sovereign_hub.spawner.clusters import kubeconfig_path
from tests.conftest import ROOT


def _with_clusters(eu: dict | None, us: dict | None) -> str:
    doc = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    for name, cluster in (("eu", eu), ("us", us)):
        if cluster is not None:
            doc["regions"][name]["cluster"] = cluster
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.mark.parametrize(
    ("eu", "us", "names", "paths"),
    [
        (None, None, ("hub", "hub"), (None, None)),
        (
            {"name": "eu-fra", "kubeconfigSecret": {"name": "eu-kube"}},
            None,
            ("eu-fra", HUB_CLUSTER),
            ("/secrets/eu-kube/kubeconfig", None),
        ),
        (
            {"name": "eu-fra", "kubeconfigSecret": {"name": "eu-kube", "key": "config"}},
            {"name": "us-iad", "kubeconfig": "/etc/kube/us.yaml"},
            ("eu-fra", "us-iad"),
            ("/secrets/eu-kube/config", "/etc/kube/us.yaml"),
        ),
        (  # two regions may share one cluster when they reach it the same way
            {"name": "shared", "kubeconfig": "/etc/kube/one.yaml"},
            {"name": "shared", "kubeconfig": "/etc/kube/one.yaml"},
            ("shared", "shared"),
            ("/etc/kube/one.yaml", "/etc/kube/one.yaml"),
        ),
    ],
)
def test_a_region_names_its_cluster_or_runs_in_the_hubs(eu, us, names, paths):
    policy = parse_policy(_with_clusters(eu, us)).policy
    assert (policy.regions["eu"].cluster_name, policy.regions["us"].cluster_name) == names
    found = tuple(
        kubeconfig_path(r.cluster, "/secrets") if r.cluster else None
        for r in (policy.regions["eu"], policy.regions["us"])
    )
    assert found == paths
