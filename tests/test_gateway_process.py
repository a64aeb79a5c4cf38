"""``sovereign-gateway`` as a process against an emulated API server (no real one can run
here; sandbox/kube is as strict as kube-apiserver v1.36 for what the gateway uses: list and
watch of pods, and watches ending when the server restarts).

Its pods are plain ``python -m http.server`` processes the emulated kubelet runs on their
own loopback addresses, serving a folder laid out as ``user/<name>/``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from sovereign_hub.sandbox.gatewayprocess import Gateway
from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.sandbox.tls import local_certificates


def notebook_pod(user: str, command: list[str]) -> dict:
    """A KubeSpawner-like notebook pod for ``user`` (its labels and annotation, its
    notebook port) running ``command``, on a US node."""
    return {
        "metadata": {
            "name": f"jupyter-{user}",
            "labels": {"component": "singleuser-server"},
            "annotations": {"hub.jupyter.org/username": user},
        },
        "spec": {
            "containers": [{
                "name": "notebook", "image": "example.org/nb@sha256:" + "0" * 64,
                "command": command,
                "ports": [{"name": "notebook-port", "containerPort": 8888}],
            }],
            "nodeSelector": {"topology.kubernetes.io/region": "us-east-1"},
        },
    }  # fmt: skip


def create_pod(kube: Cluster, user: str, folder: Path) -> None:
    """A notebook pod for ``user`` serving ``folder`` on its notebook port."""

    async def create() -> None:
        from kubernetes_asyncio import client

        serve = [sys.executable, "-m", "http.server", "8888", "--bind", "0.0.0.0",
                 "--directory", str(folder)]  # fmt: skip
        await client.CoreV1Api(kube._client).create_namespaced_pod(
            kube.namespace, notebook_pod(user, serve)
        )

    kube.call(create())


def delete_pod(kube: Cluster, user: str) -> None:
    async def delete() -> None:
        from kubernetes_asyncio import client

        await client.CoreV1Api(kube._client).delete_namespaced_pod(
            f"jupyter-{user}", kube.namespace
        )

    kube.call(delete())


def eventually(check, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.3)


@pytest.fixture
def served(tmp_path) -> Path:
    for user in ("carol", "dave"):
        folder = tmp_path / "www" / "user" / user
        folder.mkdir(parents=True)
        (folder / "hello.txt").write_text(f"hello from {user}'s pod\n")
    return tmp_path / "www"


def test_gateway_follows_pods_through_an_emulated_api_server_restart(kube, tmp_path, served):
    server = local_certificates(tmp_path / "tls" / "gateway", common_name="gateway CA")
    client = local_certificates(tmp_path / "tls" / "hub-client", common_name="hub CA")
    gateway = Gateway(kube, server, client["ca"], tmp_path / "gateway.log")
    cert = (str(client["cert"]), str(client["key"]))

    def get(user: str) -> requests.Response:
        url = f"{gateway.url}/user/{user}/hello.txt?token=s3cr3t-in-query"
        return requests.get(url, verify=str(server["ca"]), cert=cert, timeout=10)

    try:
        create_pod(kube, "carol", served)
        eventually(lambda: get("carol").status_code == 200)
        assert get("carol").text == "hello from carol's pod\n"

        # Watches end when the API server goes away; the gateway lists again when it is back,
        # and still serves the routes it had meanwhile.
        kube.restart_api_server(down_for=3)
        assert get("carol").status_code == 200
        create_pod(kube, "dave", served)
        eventually(lambda: get("dave").status_code == 200)

        # A deleted pod loses its route: the gateway's own 503 ("not there (yet)"), not the
        # pod's answer.
        delete_pod(kube, "carol")
        eventually(lambda: get("carol").status_code == 503)
        assert get("carol").json()["message"].startswith("no running server for this path")
    finally:
        gateway.stop()
    log = gateway.log_path.read_text()
    assert "GET /user/carol/hello.txt 200" in log
    assert "s3cr3t-in-query" not in log
    # No --client-name: said loudly, once, at start-up.
    assert log.count("no --client-name given: EVERY certificate the client CA signed") == 1


def test_gateway_refuses_a_certificate_not_named_in_client_name(kube, tmp_path, served):
    server = local_certificates(tmp_path / "tls" / "gateway", common_name="gateway CA")
    client = local_certificates(tmp_path / "tls" / "hub-client", common_name="hub CA")
    # The client CA signed this certificate (named localhost), but the gateway wants hub-proxy.
    gateway = Gateway(
        kube, server, client["ca"], tmp_path / "gateway.log",
        extra_args=["--client-name", "hub-proxy", "--client-name", "hub-proxy.jupyter"],
    )  # fmt: skip
    try:
        create_pod(kube, "carol", served)
        response = requests.get(
            f"{gateway.url}/user/carol/hello.txt", verify=str(server["ca"]),
            cert=(str(client["cert"]), str(client["key"])), timeout=10,
        )  # fmt: skip
        assert response.status_code == 403
        assert "not allowed" in response.json()["message"]
    finally:
        gateway.stop()
    log = gateway.log_path.read_text()
    assert "admitting client certificates named hub-proxy, hub-proxy.jupyter" in log
    assert "refused a client certificate naming localhost" in log
    assert "no --client-name given" not in log


def test_gateway_imports_nothing_of_the_hub():
    # Its image carries only the base dependencies: no JupyterHub, KubeSpawner or tornado.
    code = (
        "import sys, sovereign_hub.gateway.main, sovereign_hub.gateway.hub\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'jupyterhub', 'kubespawner', 'tornado', 'traitlets'})\n"
        "bad += sorted(m for m in sys.modules if m.startswith(('sovereign_hub.spawner', "
        "'sovereign_hub.policy', 'sovereign_hub.sandbox')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
