"""Dataset mounts through a real JupyterHub and proxy, on the emulated cluster (``kube`` fixture).

Kubernetes is emulated (sandbox/kube) unless SOVEREIGN_TEST_KUBECONFIG names an
API server: the pod's volumes and their ``readOnly`` flags are read back from
the API as the hub created them. The emulated kubelet runs the notebook as a
local process and does not enforce ``readOnly`` on the files; a real kubelet does.
"""

from __future__ import annotations

import time

import tests.test_spawner_hub as hub_tests
from tests.test_spawner_hub import add_users, audited, pod_of, spawn

start_hub = hub_tests.start_hub
policy_copy = hub_tests.policy_copy

DATASETS = """
datasets:
  climate:
    displayName: Climate reanalysis (EU)
    mountPath: /data/climate
    regions: [eu]
    sources:
      eu:
        persistentVolumeClaim: {claimName: climate-eu}
    access:
      - group: eu-researchers
  results:
    displayName: Shared results
    mountPath: /data/results
    regions: [eu, us]
    sources:
      eu:
        persistentVolumeClaim: {claimName: results-eu}
      us:
        nfs: {server: nfs.us.internal, path: /exports/results}
    access:
      - group: eu-researchers
      - group: us-analysts
        mode: read-write
"""


def claim(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "ssd-eu",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def mounts(pod) -> dict[str, bool]:
    """Mount path → read-only, for the dataset volumes of the notebook container."""
    return {
        m.mount_path: bool(m.read_only)
        for m in pod.spec.containers[0].volume_mounts
        if m.name.startswith("sovereign-dataset-")
    }


async def test_datasets_mount_in_their_region_only_read_only_unless_granted_in_emulated_cluster(
    kube, core, start_hub, policy_copy, tmp_path, monkeypatch
):
    from sovereign_hub.audit.store import read

    policy_copy.write_text(policy_copy.read_text() + DATASETS)
    for name in ("climate-eu", "results-eu"):
        await core.create_namespaced_persistent_volume_claim(kube.namespace, claim(name))
    audit, store = audited(tmp_path, monkeypatch)
    hub = start_hub(policy_copy, extra_config=audit)
    add_users(hub, "eu-researchers", "ana")
    add_users(hub, "us-analysts", "ana")

    assert spawn(hub, "ana", profile="cpu-small", region="eu").status_code in (201, 202)
    hub.wait_for_server("ana")
    eu = await pod_of(core, kube, "ana")
    # In the EU: both datasets, read-only (us-analysts' read-write counts only in the US).
    assert mounts(eu) == {"/data/climate": True, "/data/results": True}
    volumes = {v.name: v for v in eu.spec.volumes}
    assert volumes["sovereign-dataset-climate"].persistent_volume_claim.claim_name == "climate-eu"
    assert volumes["sovereign-dataset-climate"].persistent_volume_claim.read_only is True
    assert hub.api("DELETE", "/users/ana/server").status_code in (202, 204)
    hub.wait_for_server("ana", ready=False)

    assert spawn(hub, "ana", profile="cpu-small", region="us").status_code in (201, 202)
    hub.wait_for_server("ana")
    us = await pod_of(core, kube, "ana")
    assert us.metadata.labels["sovereign-hub.io/region"] == "us"
    # In the US: the EU-only dataset is absent; results comes from the US source, writable.
    assert mounts(us) == {"/data/results": False}
    results = next(v for v in us.spec.volumes if v.name == "sovereign-dataset-results")
    assert results.csi.driver == "nfs.csi.k8s.io"
    assert results.csi.volume_attributes == {
        "server": "nfs.us.internal",
        "share": "/exports/results",
    }
    assert all(
        v.persistent_volume_claim is None or v.persistent_volume_claim.claim_name != "climate-eu"
        for v in us.spec.volumes
    )

    def recorded() -> list[dict]:
        records = list(read(str(store))) if store.exists() else []
        return [r["data"] for r in records if r["schema"].endswith("/dataset-mounted/v1")]

    deadline = time.monotonic() + 20
    while len(recorded()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(e["dataset"], e["region"], e["mode"], e["source"]) for e in recorded()] == [
        ("climate", "eu", "read-only", "persistentVolumeClaim"),
        ("results", "eu", "read-only", "persistentVolumeClaim"),
        ("results", "us", "read-write", "nfs"),
    ]
    assert all(e["subject"] == "ana" and "server" in e for e in recorded())
