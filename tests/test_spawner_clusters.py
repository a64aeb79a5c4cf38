"""The seam onto KubeSpawner for a region's own cluster (spawner/clusters.py), without a hub.

No API server runs here: the regional cluster's kubeconfig names a loopback
port nothing listens on, so its probe is refused at once.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from kubespawner.spawner import EventReflector, PodReflector

from sovereign_hub.policy import Cluster
from sovereign_hub.refusals import SpawnRefused
from sovereign_hub.sandbox.kube.cluster import write_kubeconfig
from sovereign_hub.sandbox.tls import local_certificates
from sovereign_hub.spawner import SovereignSpawner
from sovereign_hub.spawner.clusters import regional_reflector
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("offline_kubeconfig")


@pytest.fixture
def us_east(tmp_path) -> Cluster:
    path = write_kubeconfig(tmp_path / "us-east", "http://127.0.0.1:9", "t0ken", "hub")
    return Cluster(name="us-east", kubeconfig=str(path))


async def test_a_regions_cluster_gets_its_own_client_and_reflector_keys(us_east):
    spawner = SovereignSpawner(_mock=True, namespace="hub")
    hub_api = spawner.api
    assert (spawner.cluster_name, spawner._get_reflector_key("pods")) == ("hub", ("pods", "hub"))

    await spawner.use_cluster("us", us_east, probe=False)
    assert spawner.cluster_name == "us-east"
    assert spawner._get_reflector_key("pods") == ("pods", "hub", "us-east")
    assert spawner._get_reflector_key("events") == ("events", "hub", "us-east")
    assert spawner.api is not hub_api
    assert spawner.api.api_client.configuration.host == "http://127.0.0.1:9"

    # Back to a region on the hub's own cluster: KubeSpawner's own client and keys.
    await spawner.use_cluster("eu", None, probe=False)
    assert spawner.api is hub_api
    assert spawner._get_reflector_key("pods") == ("pods", "hub")


async def test_an_unreachable_cluster_is_refused_fast_naming_the_region(us_east):
    spawner = SovereignSpawner(_mock=True, namespace="hub", cluster_probe_timeout=5.0)
    hub_api = spawner.api
    began = time.monotonic()
    with pytest.raises(SpawnRefused) as refused:
        await spawner.use_cluster("us", us_east, probe=True)
    assert time.monotonic() - began < 5
    assert refused.value.status_code == 503
    message = refused.value.jupyterhub_message
    assert message.startswith("Region 'us' cannot start servers right now: its cluster 'us-east'")
    assert "127.0.0.1:9" not in message  # the user is told the region, not the address
    # Nothing was switched: the spawner still faces the hub's own cluster.
    assert (spawner.api, spawner.cluster_name) == (hub_api, "hub")


async def test_an_api_server_that_never_answers_is_refused_after_the_probe_timeout(tmp_path):
    """A cluster behind a dropped link accepts nothing back: the spawn waits
    cluster_probe_timeout, not KubeSpawner's retries."""

    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read the request, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    path = write_kubeconfig(tmp_path / "silent", f"http://127.0.0.1:{port}", "t0ken", "hub")
    spawner = SovereignSpawner(_mock=True, namespace="hub", cluster_probe_timeout=0.5)
    began = time.monotonic()
    try:
        with pytest.raises(SpawnRefused, match="did not answer \\(TimeoutError\\)"):
            await spawner.use_cluster(
                "us", Cluster(name="us-east", kubeconfig=str(path)), probe=True
            )
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert 0.5 <= time.monotonic() - began < 3


async def test_an_unreadable_kubeconfig_secret_is_refused_naming_the_region(tmp_path):
    spawner = SovereignSpawner(_mock=True, namespace="hub", cluster_secrets_dir=str(tmp_path))
    missing = Cluster.model_validate(
        {"name": "us-east", "kubeconfigSecret": {"name": "us-east-kube"}}
    )
    with pytest.raises(SpawnRefused, match="Region 'us'"):
        await spawner.use_cluster("us", missing, probe=True)


@pytest.mark.parametrize("reflector", [PodReflector, EventReflector])
def test_the_regional_reflector_is_kubespawners_own_class_made_once(reflector):
    regional = regional_reflector(reflector)
    assert issubclass(regional, reflector)
    assert regional is regional_reflector(reflector)
    assert regional.__name__ == f"Regional{reflector.__name__}"


async def test_a_poll_that_cannot_reach_the_cluster_is_not_taken_for_a_stopped_server(us_east):
    """JupyterHub reads a failed poll as a dead server; at start-up it then forgets it and its
    pod keeps running. A cluster out of reach answers 'running' (None) until it is back."""
    spawner = SovereignSpawner(_mock=True, namespace="hub", k8s_api_request_retry_timeout=1,
                               policy_file=str(ROOT / "examples" / "policy.yaml"))  # fmt: skip
    await spawner.use_cluster("us", us_east, probe=False)
    assert await spawner.poll() is None


@pytest.fixture
async def tls_api_server(tmp_path):
    """The emulated API server (no real one runs here) over TLS with bearer-token auth, as a
    regional cluster's: (server, its https URL, the CA file)."""
    import ssl

    from aiohttp import web

    from sovereign_hub.sandbox.kube.apiserver import ApiServer
    from sovereign_hub.sandbox.kube.store import Store
    from sovereign_hub.sandbox.tls import local_certificates

    tls = local_certificates(tmp_path / "tls", common_name="regional CA")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls["cert"], tls["key"])
    server = ApiServer(Store(history=100), token="first-t0ken")
    runner = web.AppRunner(server.app(), shutdown_timeout=0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        yield server, f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", tls["ca"]
    finally:
        await runner.cleanup()


def swap(folder, name: str, content: str) -> None:
    """Replace a file as a Secret volume's update does (a new file renamed over the old)."""
    (folder / f".{name}.new").write_text(content)
    (folder / f".{name}.new").rename(folder / name)


async def test_a_rotated_kubeconfig_is_followed_without_a_hub_restart(tls_api_server, tmp_path):
    """The region's Secret gets a new token (the old one revoked at the API server): the next
    spawn's probe, and clients made before the rotation (as reflectors hold), use the new one.
    A new server address gets a new client, and the region's pod watch moves to it."""
    server, url, ca = tls_api_server
    secret = tmp_path / "secret"
    secret.mkdir()
    path = secret / "kubeconfig"
    write_kubeconfig(path, url, "first-t0ken", "hub", ca)
    cluster = Cluster(name="us-east", kubeconfig=str(path))
    spawner = SovereignSpawner(_mock=True, namespace="hub")
    await spawner.use_cluster("us", cluster, probe=True)
    held = spawner.api  # what a reflector started now keeps
    watching = await spawner._start_watching_pods()
    server.token = "second-t0ken"  # the API server accepts only the new token
    write_kubeconfig(tmp_path / "new", url, "second-t0ken", "hub", ca)
    swap(secret, "kubeconfig", (tmp_path / "new").read_text())
    await spawner.use_cluster("us", cluster, probe=True)  # refused (401) without the reload
    assert (await held.list_namespaced_pod("hub")).items == []
    assert spawner.api.api_client is held.api_client  # same server: the same client
    # Another server address: a new client for what comes next.
    write_kubeconfig(tmp_path / "new", url.replace("127.0.0.1", "localhost"), "second-t0ken",
                     "hub", ca)  # fmt: skip
    swap(secret, "kubeconfig", (tmp_path / "new").read_text())
    await spawner.use_cluster("us", cluster, probe=True)
    assert spawner.api.api_client is not held.api_client
    # The region's watch moves there too, at the next spawn or poll: no hub restart.
    try:
        moved = await spawner._start_watching_pods()
        assert moved is not watching
        assert moved.api.api_client is spawner.api.api_client
        assert watching._stopping  # the old watch is stopped, not left running
        assert await spawner._start_watching_pods() is moved
    finally:
        for reflector in {watching, *SovereignSpawner.reflectors.values()}:
            await reflector.stop()
        SovereignSpawner.reflectors.clear()


async def test_a_token_cluster_is_reached_with_its_secrets_token_and_ca(tls_api_server, tmp_path):
    """``server`` + ``tokenSecret``: the hub reads the token and CA from the mounted Secret,
    verifies the server's certificate with that CA, and follows a rotated token."""
    server, url, ca = tls_api_server
    secrets_dir = tmp_path / "clusters"
    secret = secrets_dir / "us-token"
    secret.mkdir(parents=True)
    swap(secret, "token", "first-t0ken\n")
    swap(secret, "ca.crt", ca.read_text())
    cluster = Cluster.model_validate(
        {"name": "us-east", "server": url, "tokenSecret": {"name": "us-token"}}
    )
    spawner = SovereignSpawner(_mock=True, namespace="hub", cluster_secrets_dir=str(secrets_dir))
    await spawner.use_cluster("us", cluster, probe=True)
    held = spawner.api
    server.token = "second-t0ken"
    swap(secret, "token", "second-t0ken")
    assert (await held.list_namespaced_pod("hub")).items == []  # the same client, new token
    # A CA that did not sign the server's certificate: refused, naming the region.
    other = local_certificates(tmp_path / "other", common_name="another CA")
    swap(secret, "ca.crt", other["ca"].read_text())
    stranger = Cluster.model_validate(
        {"name": "us-west", "server": url, "tokenSecret": {"name": "us-token"}}
    )
    with pytest.raises(SpawnRefused, match="Region 'us' cannot start servers right now"):
        await spawner.use_cluster("us", stranger, probe=True)


class _Impatient:
    """``asyncio`` as KubeSpawner's reflector module sees it, with its back-off sleeps cut
    to nothing, so a watch gives up in a moment rather than after about 50 s."""

    def __getattr__(self, name: str):
        return getattr(asyncio, name)

    @staticmethod
    async def sleep(delay: float) -> None:
        await asyncio.sleep(0)


async def test_a_regions_pod_watch_that_gave_up_is_replaced_when_the_cluster_is_back(
    tmp_path, monkeypatch
):
    """The emulated API server (no real one runs here) of a region goes away for longer than
    KubeSpawner's watch retries: its pod reflector gives up for good. When the cluster is
    back, the next spawn or poll gets a new reflector that sees the pods started since."""
    import kubespawner.reflector
    from aiohttp import web

    from sovereign_hub.sandbox.kube.apiserver import ApiServer
    from sovereign_hub.sandbox.kube.store import Store

    server = ApiServer(Store(history=100), token="t0ken")

    async def serve(port: int = 0) -> tuple[web.AppRunner, int]:
        runner = web.AppRunner(server.app(), shutdown_timeout=0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]

    def pod(name: str) -> dict:
        container = {"name": "notebook", "image": "python"}
        labels = {"component": "singleuser-server"}  # what KubeSpawner's pod reflector selects
        return {"metadata": {"name": name, "labels": labels}, "spec": {"containers": [container]}}

    runner, port = await serve()
    url = f"http://127.0.0.1:{port}"
    path = write_kubeconfig(tmp_path / "us-east", url, "t0ken", "hub")
    spawner = SovereignSpawner(_mock=True, namespace="hub", k8s_api_request_retry_timeout=5)
    await spawner.use_cluster("us", Cluster(name="us-east", kubeconfig=str(path)), probe=True)
    core = spawner.api
    await core.create_namespace({"metadata": {"name": "hub"}})
    await core.create_namespaced_pod("hub", pod("jupyter-ana"))
    first = await spawner._start_watching_pods()
    assert "hub/jupyter-ana" in first.pods
    try:
        monkeypatch.setattr(kubespawner.reflector, "asyncio", _Impatient())
        await runner.cleanup()  # the region's API server goes away
        await asyncio.wait_for(first.watch_task, timeout=30)  # the watch gave up
        monkeypatch.undo()

        runner, _ = await serve(port)  # back, with what happened meanwhile
        await core.create_namespaced_pod("hub", pod("jupyter-bob"))
        again = await spawner._start_watching_pods()
        assert again is not first
        assert {"hub/jupyter-ana", "hub/jupyter-bob"} <= set(again.pods)
        assert not again.watch_task.done()
        assert await spawner._start_watching_pods() is again  # healthy: kept
    finally:
        for reflector in {first, *SovereignSpawner.reflectors.values()}:
            await reflector.stop()
        SovereignSpawner.reflectors.clear()
        await core.api_client.close()
        await runner.cleanup()
