"""The gateway's in-cluster login (its ServiceAccount) against an emulated API server.

No real API server or kubelet can run here: the API server is the emulator (sandbox/kube),
which checks a bearer token on every request, and the ServiceAccount folder the kubelet
would mount is a temporary one, with KUBERNETES_SERVICE_HOST and _PORT set as the kubelet
sets them. A token is rotated as the kubelet rotates a projected one: a new file swapped in.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from kubernetes_asyncio.client import CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import ConfigException

from sovereign_hub.gateway.incluster import incluster_client
from sovereign_hub.sandbox.gatewayprocess import Gateway
from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.sandbox.tls import local_certificates
from tests.test_gateway_process import create_pod, eventually

if os.environ.get("SOVEREIGN_TEST_KUBECONFIG"):
    pytest.skip("swaps the emulated API server's token", allow_module_level=True)


def serviceaccount(kube: Cluster, folder: Path) -> tuple[Path, dict[str, str]]:
    """The folder the kubelet would mount (token, ca.crt) for ``kube``'s token, and the
    environment it would set."""
    folder.mkdir(parents=True)
    (folder / "token").write_text(kube.api.token)
    shutil.copy(kube.state_dir / "tls" / "ca.pem", folder / "ca.crt")
    server = urlsplit(kube.server)
    return folder, {"KUBERNETES_SERVICE_HOST": str(server.hostname),
                    "KUBERNETES_SERVICE_PORT": str(server.port)}  # fmt: skip


def rotate(kube: Cluster, folder: Path) -> str:
    """A new token: the API server takes only it from now on, and the file is swapped as a
    projected volume's is (a new file renamed over the old). The old token, to put back:
    the emulated cluster's own scheduler and kubelet use it."""
    old, token = kube.api.token, secrets.token_urlsafe(24)
    kube.api.token = token
    (folder / "token.new").write_text(token)
    os.replace(folder / "token.new", folder / "token")
    return old


def test_the_in_cluster_client_follows_a_rotated_token_emulated_api_server(kube, tmp_path):
    folder, environ = serviceaccount(kube, tmp_path / "sa")

    stale = tmp_path / "stale"
    stale.mkdir()
    shutil.copy(folder / "ca.crt", stale / "ca.crt")
    (stale / "token").write_text(kube.api.token)

    async def pods() -> None:
        async with (
            incluster_client(str(folder), environ) as client,
            incluster_client(str(stale), environ) as old,
        ):
            await CoreV1Api(client).list_namespaced_pod(kube.namespace)
            await CoreV1Api(old).list_namespaced_pod(kube.namespace)
            original = rotate(kube, folder)
            try:
                # The server refuses the old token now: the rotation is real ...
                with pytest.raises(ApiException) as refused:
                    await CoreV1Api(old).list_namespaced_pod(kube.namespace)
                assert refused.value.status == 401
                # ... and the very next request of the rotated client carries the new one:
                # no restart, no minute's wait.
                await CoreV1Api(client).list_namespaced_pod(kube.namespace)
            finally:
                kube.api.token = original

    asyncio.run(pods())


@pytest.mark.parametrize(
    ("environ", "files", "message"),
    [
        ({}, ("token", "ca.crt"), "Service host/port is not set"),
        ({"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1"}, ("ca.crt",),
         "Service token file does not exist"),
        ({"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1"}, ("token",),
         "Service certification file does not exist"),
    ],
)  # fmt: skip
def test_a_missing_service_address_token_or_ca_is_named(tmp_path, environ, files, message):
    for name in files:
        (tmp_path / name).write_text("x")
    with pytest.raises(ConfigException, match=message):
        incluster_client(str(tmp_path), environ)


def test_the_gateway_process_logs_in_with_its_serviceaccount_emulated_api_server(kube, tmp_path):
    folder, _ = serviceaccount(kube, tmp_path / "sa")
    server = local_certificates(tmp_path / "tls" / "gateway", common_name="gateway CA")
    client = local_certificates(tmp_path / "tls" / "hub-client", common_name="hub CA")
    served = tmp_path / "www" / "user" / "carol"
    served.mkdir(parents=True)
    (served / "hello.txt").write_text("hello\n")
    # Returns once the gateway listed the namespace's pods: with the token from the folder.
    gateway = Gateway(kube, server, client["ca"], tmp_path / "gateway.log",
                      serviceaccount_dir=folder)  # fmt: skip
    try:
        create_pod(kube, "carol", tmp_path / "www")

        def get() -> requests.Response:
            return requests.get(
                f"{gateway.url}/user/carol/hello.txt", verify=str(server["ca"]),
                cert=(str(client["cert"]), str(client["key"])), timeout=10,
            )  # fmt: skip

        eventually(lambda: get().status_code == 200)
    finally:
        gateway.stop()
    assert "--kubeconfig" not in " ".join(gateway.process.args)
