"""Proof of fidelity: stock KubeSpawner in a real JupyterHub, against the ``kube`` fixture.

Kubernetes is emulated here unless SOVEREIGN_TEST_KUBECONFIG names a real API
server. Nothing in KubeSpawner is patched: it starts a user's server with its
reflectors' list+watch, creates a PVC, polls, stops and deletes the pod; the
user then reaches the server through configurable-http-proxy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import requests
from kubernetes_asyncio.client.exceptions import ApiException

from sovereign_hub.sandbox.hubprocess import Hub
from tests.conftest import eventually

SINGLEUSER = Path(sys.executable).with_name("jupyterhub-singleuser")
IMAGE = "quay.io/jupyter/base-notebook@sha256:876e3c3e40c4f0a25d3a16223a158a2d582b1ad77ac94269d43a5f6256eb4eec"


@pytest.fixture
def hub(kube, tmp_path):
    config = f"""
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.namespace = {kube.namespace!r}
c.KubeSpawner.scheduler_name = {kube.scheduler_name!r}
c.KubeSpawner.image = {IMAGE!r}
c.KubeSpawner.cmd = [{str(SINGLEUSER)!r}]
c.KubeSpawner.args = {["--allow-root"] if os.geteuid() == 0 else []!r}
c.KubeSpawner.start_timeout = 90
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.storage_capacity = "1Gi"
c.KubeSpawner.storage_class = "ssd-eu"
c.KubeSpawner.pvc_name_template = "claim-{{user_server}}"
c.KubeSpawner.volumes = [{{"name": "home", "persistentVolumeClaim": {{"claimName": "claim-{{user_server}}"}}}}]
c.KubeSpawner.volume_mounts = [{{"name": "home", "mountPath": "/home/jovyan"}}]
c.KubeSpawner.working_dir = "/home/jovyan"
c.KubeSpawner.node_selector = {{"topology.kubernetes.io/region": "eu-central-1"}}
"""
    hub = Hub(tmp_path / "hub", config, env={"KUBECONFIG": str(kube.kubeconfig)})
    try:
        yield hub
    finally:
        hub.stop()


async def test_stock_kubespawner_lifecycle_through_the_proxy(kube, core, hub):
    ns = kube.namespace
    assert hub.api("POST", "/users/ana").status_code == 201
    assert hub.api("POST", "/users/ana/server").status_code in (201, 202)
    model = hub.wait_for_server("ana")
    assert model["servers"][""]["ready"]

    pod = await core.read_namespaced_pod("jupyter-ana", ns)
    assert pod.status.phase == "Running"
    assert pod.spec.node_name == kube.nodes["eu-cpu-1"]
    assert pod.metadata.labels["component"] == "singleuser-server"
    pvc = await core.read_namespaced_persistent_volume_claim("claim-ana", ns)
    assert pvc.status.phase == "Bound"

    # The user reaches the running server through the proxy.
    token = hub.api("POST", "/users/ana/tokens", json={"note": "fidelity"}).json()["token"]
    response = requests.get(
        f"{hub.url}/user/ana/api/status", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert response.status_code == 200, hub.logs()
    assert "started" in response.json()
    contents = requests.get(
        f"{hub.url}/user/ana/api/contents", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert contents.status_code == 200

    # Stop: KubeSpawner deletes the pod, keeps the claim.
    assert hub.api("DELETE", "/users/ana/server").status_code in (202, 204)
    hub.wait_for_server("ana", ready=False)

    async def pod_gone():
        try:
            await core.read_namespaced_pod("jupyter-ana", ns)
        except ApiException as exc:
            return exc.status == 404
        return False

    await eventually(pod_gone, timeout=60)
    assert (
        await core.read_namespaced_persistent_volume_claim("claim-ana", ns)
    ).status.phase == "Bound"
