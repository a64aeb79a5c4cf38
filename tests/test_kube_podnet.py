"""NetworkPolicies enforced by the emulated cluster's own kubelet (sandbox/kube/podnet.py).

Kubernetes is emulated (sandbox/kube): with ``Cluster(pod_network=True)`` the
process kubelet gives each pod a network namespace and a 198.18.0.0/15 address
(its ``status.podIP``), and turns the NetworkPolicies of the pod's namespace
into nftables egress rules, re-applied when a policy changes. The policies
here are created through the API server, as ``kubectl apply`` would; the
connections are made from inside running pods with ``pods/exec``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client, config

from sovereign_hub.sandbox.kube import podnet
from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.sandbox.kube.inventory import load_inventory
from sovereign_hub.sandbox.kube.podnet import PodNetworking
from sovereign_hub.sandbox.netpol import TABLE
from sovereign_hub.sandbox.podnet import unavailable
from tests.conftest import TEST_NODES, eventually, missing
from tests.test_helm_chart import by_kind, example_policy_values, helm_binary, render

__all__ = ["example_policy_values"]  # a fixture, shared with the chart tests

NS = "default"
METADATA = "169.254.169.254"
LISTEN = """
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"ok"); c.close()
for port in map(int, sys.argv[1:]):
    threading.Thread(target=serve, args=(port,), daemon=True).start()
threading.Event().wait()
"""
CONNECT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
        print(s.recv(2).decode() or "connected")
except OSError as e:
    print(type(e).__name__)
"""


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    if why := unavailable():
        missing(f"network namespaces and nftables ({why})", "make system")
    with Cluster(load_inventory(TEST_NODES), tmp_path / "kube", pod_network=True) as running:
        yield running


def pod(name: str, labels: dict[str, str], argv: list[str], ports: list | None = None) -> dict:
    container = {"name": "main", "image": "python", "command": argv, "ports": ports or []}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [container], "restartPolicy": "Never"},
    }


def policy(name: str, selector: dict[str, str], egress: list[dict]) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Egress"],
            "egress": egress,
        },
    }


async def running_ip(core: client.CoreV1Api, name: str) -> str:
    async def ip() -> str | None:
        status = (await core.read_namespaced_pod(name, NS)).status
        return status.pod_ip if status.phase == "Running" else None

    return await eventually(ip, timeout=60)


def reach(cluster: Cluster, name: str, ip: str, port: int) -> str:
    """What a connection from pod ``name`` to ``ip:port`` gets, via pods/exec."""
    assert cluster.kubelet is not None

    async def run() -> str:
        proc = await cluster.kubelet.exec_in(
            NS, name, "main", [sys.executable, "-c", CONNECT, ip, str(port)], stdin=False
        )
        out, err = await proc.communicate()
        return (out or err).decode().strip()

    return cluster.call(run(), timeout=60)


def until(cluster: Cluster, name: str, ip: str, port: int, expected: str) -> None:
    """Wait until pod ``name`` gets ``expected`` from ``ip:port`` (rules apply on a watch event)."""
    deadline = time.monotonic() + 60
    while (got := reach(cluster, name, ip, port)) != expected:
        assert time.monotonic() < deadline, f"{name} → {ip}:{port}: {got}, not {expected}"
        time.sleep(0.5)


async def test_policies_of_the_namespace_limit_each_pods_egress_in_emulated_cluster(cluster):
    assert cluster.network is not None
    api = await config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core, networking = client.CoreV1Api(api), client.NetworkingV1Api(api)
    try:
        sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
        await core.create_namespaced_pod(
            NS, pod("web", {"app": "web"}, [sys.executable, "-c", LISTEN, "8080", "9090"])
        )
        await core.create_namespaced_pod(NS, pod("client", {"role": "client"}, sleep))
        await core.create_namespaced_pod(NS, pod("other", {"role": "other"}, sleep))
        web = await running_ip(core, "web")
        for name in ("client", "other"):
            await running_ip(core, name)
        # Each pod has an address of its own from the cluster's /24 of 198.18.0.0/15.
        assert ipaddress.ip_address(web) in cluster.network.subnet
        assert cluster.network.subnet.subnet_of(ipaddress.ip_network("198.18.0.0/15"))
        # The server listens on 0.0.0.0 in its namespace; wait until it answers.
        await asyncio.to_thread(until, cluster, "client", web, 8080, "ok")

        # No policy selects the client: it reaches every port.
        assert reach(cluster, "client", web, 9090) == "ok"

        # Deny all egress of role=client: applied to the running pod when the policy appears.
        await networking.create_namespaced_network_policy(
            NS, policy("deny-client-egress", {"role": "client"}, [])
        )
        await asyncio.to_thread(until, cluster, "client", web, 8080, "TimeoutError")
        assert reach(cluster, "client", web, 9090) == "TimeoutError"
        # A pod the policy does not select is not limited by it.
        assert reach(cluster, "other", web, 8080) == "ok"

        # Policies add up: one allowing pods app=web on TCP 8080 opens exactly that port.
        allow = {"to": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                 "ports": [{"protocol": "TCP", "port": 8080}]}  # fmt: skip
        await networking.create_namespaced_network_policy(
            NS, policy("client-to-web", {"role": "client"}, [allow])
        )
        await asyncio.to_thread(until, cluster, "client", web, 8080, "ok")
        assert reach(cluster, "client", web, 9090) == "TimeoutError"

        # Relabelling the running pod out of the policies' selector frees it, and back limits it.
        for role, expected in (("released", "ok"), ("client", "TimeoutError")):
            await core.patch_namespaced_pod("client", NS, {"metadata": {"labels": {"role": role}}})
            await asyncio.to_thread(until, cluster, "client", web, 9090, expected)

        # Deleting both policies opens the pod again.
        for name in ("deny-client-egress", "client-to-web"):
            await networking.delete_namespaced_network_policy(name, NS)
        await asyncio.to_thread(until, cluster, "client", web, 9090, "ok")
    finally:
        await api.close()


async def test_ingress_policies_admit_only_their_peers_and_the_node_in_emulated_cluster(cluster):
    api = await config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core, networking = client.CoreV1Api(api), client.NetworkingV1Api(api)
    try:
        sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
        web = pod("web", {"app": "web"}, [sys.executable, "-c", LISTEN, "8080", "9090"])
        # The kubelet probes from the node: Kubernetes lets that through whatever the policy.
        web["spec"]["containers"][0]["readinessProbe"] = {
            "tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 1
        }  # fmt: skip
        await core.create_namespaced_pod(NS, web)
        await core.create_namespaced_pod(NS, pod("client", {"role": "client"}, sleep))
        await core.create_namespaced_pod(NS, pod("other", {"role": "other"}, sleep))
        web_ip = await running_ip(core, "web")
        for name in ("client", "other"):
            await running_ip(core, name)
        await asyncio.to_thread(until, cluster, "other", web_ip, 9090, "ok")

        ingress = {"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                   "ports": [{"port": 8080}]}  # fmt: skip
        body = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "web-from-clients"},
            # No policyTypes: a policy with only ingress rules is an Ingress policy.
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [ingress]},
        }
        await networking.create_namespaced_network_policy(NS, body)
        await asyncio.to_thread(until, cluster, "other", web_ip, 8080, "TimeoutError")
        assert reach(cluster, "client", web_ip, 8080) == "ok"
        assert reach(cluster, "client", web_ip, 9090) == "TimeoutError"
        # The web pod's own egress is not limited by its ingress policy.
        client_ip = (await core.read_namespaced_pod("client", NS)).status.pod_ip
        assert reach(cluster, "web", client_ip, 1) == "ConnectionRefusedError"

        async def ready() -> bool:
            status = (await core.read_namespaced_pod("web", NS)).status
            return any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])

        await asyncio.sleep(3)  # several probe periods under the policy
        assert await eventually(ready, timeout=30)
    finally:
        await api.close()


def test_stopping_the_cluster_removes_every_namespace_and_link(tmp_path):
    if why := unavailable():
        missing(f"network namespaces and nftables ({why})", "make system")
    with Cluster(load_inventory(TEST_NODES), tmp_path / "kube", pod_network=True) as running:
        assert running.network is not None
        node, link = running.network.node, running.network.host_link
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert node in names
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert node not in names
    links = subprocess.run(["ip", "link", "show"], capture_output=True, text=True).stdout
    assert link not in links
    assert Path("/var/run/netns", node).exists() is False


def template(docs: list[dict], name: str) -> tuple[dict[str, str], list[dict]]:
    """A rendered Deployment's pod labels and its container's ports (named: the policies
    name them)."""
    (deployment,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == name]
    spec = deployment["spec"]["template"]
    return spec["metadata"]["labels"], spec["spec"]["containers"][0]["ports"]


async def test_the_charts_policies_hold_in_the_emulated_cluster(
    cluster, example_policy_values, tmp_path
):
    """The rendered chart's NetworkPolicies, created through the API server: an EU notebook
    reaches the hub and the EU's endpoint only (not the US's, not the cloud metadata
    server), only the proxy and the hub reach it, and the hub reaches its audit sink on the
    sink's port only."""
    api = await config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core, networking = client.CoreV1Api(api), client.NetworkingV1Api(api)
    serve = [sys.executable, "-c", LISTEN]
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    try:
        # A data endpoint per region: the policy's egressCidrs name their addresses.
        for region in ("eu", "us"):
            await core.create_namespaced_pod(
                NS, pod(f"data-{region}", {"data": region}, [*serve, "443"])
            )
        data = {r: await running_ip(core, f"data-{r}") for r in ("eu", "us")}
        # The install guide's SIEM: syslog over TLS on 6514, the hub's egress follows it.
        sinks = tmp_path / "sinks.yaml"
        sinks.write_text(yaml.safe_dump({"audit": {"sinks": [
            {"type": "sqlite", "path": "/srv/jupyterhub/audit.sqlite"},
            {"type": "syslog", "host": "siem.corp.example", "tls": True}]}}))  # fmt: skip
        docs = render(
            helm_binary("4.1"),
            example_policy_values,
            sinks,
            sets=tuple(f"policy.regions.{r}.egressCidrs={{{ip}/32}}" for r, ip in data.items()),
            namespace=NS,
        )
        for doc in by_kind(docs, "NetworkPolicy"):
            await networking.create_namespaced_network_policy(NS, doc)
        (singleuser,) = [
            d for d in by_kind(docs, "NetworkPolicy")
            if d["metadata"]["name"] == "rel-sovereign-hub-singleuser"
        ]  # fmt: skip
        # Labelled as the spawner labels a user pod (common labels and the plan's region).
        notebook = {
            **singleuser["spec"]["podSelector"]["matchLabels"],
            "sovereign-hub.io/region": "eu",
        }
        hub_labels, hub_ports = template(docs, "rel-sovereign-hub-hub")
        proxy_labels, proxy_ports = template(docs, "rel-sovereign-hub-proxy")
        pods = {
            "hub": (hub_labels, [*serve, "8081", "9999"], hub_ports),
            "proxy": (proxy_labels, [*serve, "8000", "8001"], proxy_ports),
            "notebook": (notebook, [*serve, "8888"], []),
            "stranger": ({"app": "stranger"}, sleep, []),
        }
        pods["metadata"] = ({"app": "cloud-metadata"}, [*serve, "80"], [])
        pods["siem"] = ({"app": "siem"}, [*serve, "6514", "6515"], [])
        for name, (labels, argv, ports) in pods.items():
            await core.create_namespaced_pod(NS, pod(name, labels, argv, ports))
        ip = {name: await running_ip(core, name) for name in pods}
        # A stand-in for the cloud's metadata server, on its link-local address.
        uid = (await core.read_namespaced_pod("metadata", NS)).metadata.uid
        assert cluster.network is not None
        cluster.call(cluster.network.add_address(uid, METADATA))

        await asyncio.to_thread(until, cluster, "proxy", ip["notebook"], 8888, "ok")
        assert reach(cluster, "hub", ip["notebook"], 8888) == "ok"
        assert reach(cluster, "stranger", ip["notebook"], 8888) == "TimeoutError"
        assert reach(cluster, "notebook", ip["hub"], 8081) == "ok"
        assert reach(cluster, "notebook", ip["hub"], 9999) == "TimeoutError"
        assert reach(cluster, "notebook", data["eu"], 443) == "ok"
        assert reach(cluster, "notebook", data["us"], 443) == "TimeoutError"
        # The metadata server answers a pod no policy limits, never a notebook.
        assert reach(cluster, "stranger", METADATA, 80) == "ok"
        assert reach(cluster, "notebook", METADATA, 80) == "TimeoutError"
        # The hub reaches its audit sink on the sink's port only.
        assert reach(cluster, "hub", ip["siem"], 6514) == "ok"
        assert reach(cluster, "hub", ip["siem"], 6515) == "TimeoutError"
        # The proxy's ports by name (its container's): the public one from anywhere, the
        # API from the hub only.
        assert reach(cluster, "stranger", ip["proxy"], 8000) == "ok"
        assert reach(cluster, "stranger", ip["proxy"], 8001) == "TimeoutError"
        assert reach(cluster, "hub", ip["proxy"], 8001) == "ok"
    finally:
        await api.close()


def nft_table(netns: str) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "list", "table", "inet", TABLE],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.stdout if done.returncode == 0 else f"no table: {done.stderr.strip()}"


async def test_a_pod_is_closed_before_its_link_comes_up_in_emulated_cluster(tmp_path):
    """Kubernetes is emulated: before the policies are known (the informers have not listed
    yet), an attached pod already has the closed table: only its node passes, both ways."""
    if why := unavailable():
        missing(f"network namespaces and nftables ({why})", "make system")
    api = client.ApiClient()
    net = PodNetworking(api)  # never started: nothing is listed
    try:
        spec = pod("early", {"app": "early"}, ["true"])
        spec["metadata"].update(namespace=NS, uid="0123456789abcdef")
        await net.attach("0123456789abcdef", spec, net.allocate())
        table = nft_table(net.pods["0123456789abcdef"].netns)
        assert "hook output priority filter; policy drop;" in table, table
        assert "hook input priority filter; policy drop;" in table, table
        assert net.host_ip in table
    finally:
        net.close()
        await api.close()


async def web_and_client(cluster: Cluster, core: client.CoreV1Api) -> str:
    """Pods ``web`` (answering on 8080) and ``client``, running and connected; web's IP."""
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    await core.create_namespaced_pod(
        NS, pod("web", {"app": "web"}, [sys.executable, "-c", LISTEN, "8080"])
    )
    await core.create_namespaced_pod(NS, pod("client", {"role": "client"}, sleep))
    web = await running_ip(core, "web")
    await running_ip(core, "client")
    await asyncio.to_thread(until, cluster, "client", web, 8080, "ok")
    return web


async def test_a_table_that_fails_to_load_closes_the_pod_in_emulated_cluster(cluster, monkeypatch):
    """Kubernetes is emulated: when nft refuses a pod's new table, the pod falls back to the
    closed table (its old, more open rules do not stay), and the error is logged."""
    api = await config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core, networking = client.CoreV1Api(api), client.NetworkingV1Api(api)
    try:
        web = await web_and_client(cluster, core)

        # From now on every table the translator writes is one nft refuses.
        monkeypatch.setattr(podnet, "nft_ruleset", lambda *a, **k: "table inet x { nonsense")
        await networking.create_namespaced_network_policy(
            NS, policy("allow-web", {"role": "client"}, [{"to": [{"podSelector": {}}]}])
        )
        await asyncio.to_thread(until, cluster, "client", web, 8080, "TimeoutError")
    finally:
        await api.close()


async def test_a_pod_whose_link_was_taken_down_gets_it_back_once_a_table_loads_in_emulated_cluster(
    cluster, monkeypatch
):
    """Kubernetes is emulated: when not even the closed table loads, the pod loses its link;
    the next change whose table loads brings the link back (filtered), or the pod would stay
    cut off while reported Running."""
    api = await config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core, networking = client.CoreV1Api(api), client.NetworkingV1Api(api)
    try:
        web = await web_and_client(cluster, core)

        def refuse(self, netns: str, ruleset: str) -> None:
            raise RuntimeError("nft: refused")

        monkeypatch.setattr(PodNetworking, "_load", refuse)
        await networking.create_namespaced_network_policy(
            NS, policy("first", {"role": "client"}, [{"to": [{"podSelector": {}}]}])
        )
        await asyncio.to_thread(until, cluster, "client", web, 8080, "OSError")  # no link
        monkeypatch.undo()
        await networking.create_namespaced_network_policy(
            NS, policy("second", {"role": "client"}, [{"to": [{"podSelector": {}}]}])
        )
        await asyncio.to_thread(until, cluster, "client", web, 8080, "ok")
    finally:
        await api.close()


def test_two_clusters_starting_at_once_never_take_the_same_subnet(monkeypatch):
    """Two test workers start pod-networked clusters at the same moment: each reads the
    machine's routes and picks a free /24, so without a machine-wide lock both may read
    before either routes its pick and take the same one (made certain here: every pick is
    the first free /24, and reading the routes takes half a second)."""
    if why := unavailable():
        missing(f"network namespaces and nftables ({why})", "make system")
    monkeypatch.setattr(podnet.secrets, "randbelow", lambda n: 0)
    pick = podnet.free_subnet

    def slow_pick(routes):
        time.sleep(0.5)
        return pick(routes)

    monkeypatch.setattr(podnet, "free_subnet", slow_pick)

    async def start_two() -> list[PodNetworking]:
        api = client.ApiClient()
        try:
            started = await asyncio.gather(
                *(asyncio.to_thread(PodNetworking, api) for _ in range(2)), return_exceptions=True
            )
        finally:
            await api.close()
        nets = [n for n in started if isinstance(n, PodNetworking)]
        if failed := [e for e in started if isinstance(e, BaseException)]:
            for net in nets:
                net.close()
            raise failed[0]
        return nets

    nets = asyncio.run(start_two())
    try:
        assert nets[0].subnet != nets[1].subnet
    finally:
        for net in nets:
            net.close()
