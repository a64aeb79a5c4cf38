"""The chart's hub as its pod sees it: its own network namespace, a Service name that
resolves to an address that is not the pod's, and egress limited by the rendered
NetworkPolicy as nftables rules (sovereign_hub.sandbox.podnet and .netpol).

No Kubernetes runs here: the pods are network namespaces on a bridge, with
addresses from 198.18.0.0/15, and nothing is routed off them. Each test shows
the harness catching one of issue 17's defects: the same check fails on the
defective configuration and passes on the chart's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from traitlets.config import Config

from sovereign_hub.audit.signing import new_private_key_pem
from sovereign_hub.hubconfig import Site, configure
from sovereign_hub.sandbox.netpol import Endpoint, Namespace, egress_rules, nft_ruleset
from sovereign_hub.sandbox.podnet import PodNetwork, unavailable
from tests.conftest import ROOT, missing
from tests.test_helm_chart import by_kind, helm_binary, render

HUB_LABELS = {
    "app.kubernetes.io/name": "sovereign-hub",
    "app.kubernetes.io/instance": "rel",
    "app.kubernetes.io/component": "hub",
}
PROXY_LABELS = {**HUB_LABELS, "app.kubernetes.io/component": "proxy"}
SERVICE_ADDRESS = "198.18.0.200"  # the hub Service's "ClusterIP": on no pod
LISTEN = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
while True:
    c, _ = s.accept(); c.sendall(b"ok"); c.close()
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
def network() -> Iterator[PodNetwork]:
    if why := unavailable():
        missing(f"network namespaces and nftables ({why})", "make system")
    with PodNetwork() as net:
        yield net
    # Every namespace and link is gone.
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert net.id not in listed


def hub_policy(tmp_path: Path, values: dict) -> dict:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    docs = render(helm_binary("4.1"), path)
    return next(
        d
        for d in by_kind(docs, "NetworkPolicy")
        if d["metadata"]["name"] == "rel-sovereign-hub-hub"
    )


def connect(net: PodNetwork, pod, host: str, port: int) -> str:
    return net.run(pod, [sys.executable, "-c", CONNECT, host, str(port)]).stdout.strip()


def wait_listening(net: PodNetwork, pod, port: int, process) -> None:
    deadline = time.monotonic() + 20
    while net.run(pod, ["ss", "-ltnH", f"sport = :{port}"]).stdout.strip() == "":
        assert process.poll() is None, "listener exited"
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.1)


SYSLOG_SINKS = {
    "audit": {
        "sinks": [
            {"type": "sqlite", "path": "/srv/jupyterhub/audit.sqlite"},
            {"type": "syslog", "host": "siem.corp.example", "tls": True},  # the install guide's
        ]
    }
}


def test_the_hub_reaches_the_guides_syslog_sink_on_6514_and_nothing_else(network, tmp_path):
    siem = network.add_pod("siem.corp.example")
    hub = network.add_pod("hub", hosts={"siem.corp.example": siem.ip})
    for port in (6514, 7000):
        listener = network.popen(siem, [sys.executable, "-c", LISTEN, str(port)])
        wait_listening(network, siem, port, listener)
    pod = Endpoint("hub", HUB_LABELS, hub.ip)

    # The defect: the hub's egress as the chart had it (443 and 6443, no sink ports).
    before = hub_policy(tmp_path, {"audit": {"sinks": SYSLOG_SINKS["audit"]["sinks"][:1]}})
    network.enforce(hub, nft_ruleset(egress_rules([before], pod), table="before"))
    assert connect(network, hub, "siem.corp.example", 6514) == "TimeoutError"
    network.run(hub, ["nft", "delete", "table", "inet", "before"])

    # The chart now: the sink's port follows audit.sinks.
    after = hub_policy(tmp_path, SYSLOG_SINKS)
    network.enforce(hub, nft_ruleset(egress_rules([after], pod)))
    assert connect(network, hub, "siem.corp.example", 6514) == "ok"
    assert connect(network, hub, "siem.corp.example", 7000) == "TimeoutError"


def test_an_in_cluster_store_is_reached_by_its_selector(network, tmp_path):
    relay = network.add_pod("rsyslog.logging")
    intruder = network.add_pod("intruder.other")
    hub = network.add_pod("hub")
    for pod in (relay, intruder):
        listener = network.popen(pod, [sys.executable, "-c", LISTEN, "1514"])
        wait_listening(network, pod, 1514, listener)
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "logging"}},
            "podSelector": {"matchLabels": {"app": "rsyslog"}}}  # fmt: skip
    policy = hub_policy(
        tmp_path,
        {"audit": {"sinks": [{"type": "sqlite", "path": "/srv/jupyterhub/audit.sqlite"},
                             {"type": "syslog", "host": "rsyslog.logging", "port": 1514,
                              "egressTo": [peer]}]}},
    )  # fmt: skip
    endpoints = [
        Endpoint("hub", HUB_LABELS, hub.ip),
        Endpoint("logging", {"app": "rsyslog"}, relay.ip),
        Endpoint("other", {"app": "rsyslog"}, intruder.ip),
    ]
    rules = egress_rules([policy], endpoints[0], endpoints, [Namespace("logging", {})])
    network.enforce(hub, nft_ruleset(rules))
    assert connect(network, hub, relay.ip, 1514) == "ok"
    assert connect(network, hub, intruder.ip, 1514) == "TimeoutError"


def viewer_service(tmp_path: Path) -> dict:
    """The audit viewer's service entry, as sovereign_hub.hubconfig makes it for the pod."""
    values_file = tmp_path / "viewer-values.yaml"
    values_file.write_text(yaml.safe_dump({"auth": {"auditorGroups": ["auditors"]}}))
    docs = render(helm_binary("4.1"), values_file)
    (config,) = [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-hub-config")
    ]
    values = yaml.safe_load(config["data"]["values.yaml"])
    values["audit"]["sinks"] = [{"type": "sqlite", "path": str(tmp_path / "audit.sqlite")}]
    (tmp_path / "key").write_text("k" * 64)
    c = Config()
    configure(c, values, Site.pod({"SOVEREIGN_HUB_STATE_DIR": str(tmp_path),
                                   "SOVEREIGN_AUDIT_HMAC_KEY_FILE": str(tmp_path / "key")}))  # fmt: skip
    return next(s for s in c.JupyterHub.services if s["name"] == "audit")


def start_viewer(network: PodNetwork, hub, service: dict, log: Path):
    env = {
        "PATH": "/usr/bin:/bin",
        **service["environment"],
        "JUPYTERHUB_SERVICE_URL": service["url"],
        "JUPYTERHUB_SERVICE_PREFIX": "/services/audit/",
        "JUPYTERHUB_API_TOKEN": "t" * 32,
        "JUPYTERHUB_API_URL": "http://rel-sovereign-hub-hub:8081/hub/api",
        "JUPYTERHUB_CLIENT_ID": "service-audit",
    }
    with open(log, "wb") as out:
        return network.popen(hub, [*service["command"]], env=env, stdout=out,
                             stderr=subprocess.STDOUT, cwd=log.parent)  # fmt: skip


def test_the_proxy_reaches_the_audit_viewer_in_the_hubs_pod(network, tmp_path):
    """The viewer's URL names the hub Service, which resolves to an address on no pod."""
    names = {"rel-sovereign-hub-hub": SERVICE_ADDRESS}
    hub = network.add_pod("hub", hosts=names)
    proxy = network.add_pod("proxy", hosts=names)
    service = viewer_service(tmp_path)
    assert service["url"] == "http://rel-sovereign-hub-hub:10101"

    # The defect: listening on the Service's name, i.e. its ClusterIP.
    defective = {
        **service,
        "environment": {**service["environment"], "SOVEREIGN_AUDIT_VIEWER_IP": ""},
    }
    viewer = start_viewer(network, hub, defective, tmp_path / "defective.log")
    assert viewer.wait(timeout=60) != 0
    assert "Cannot assign requested address" in (tmp_path / "defective.log").read_text()

    viewer = start_viewer(network, hub, service, tmp_path / "viewer.log")
    wait_listening(network, hub, 10101, viewer)
    fetch = (
        "import urllib.request as u, urllib.error as e, sys\n"
        "class N(u.HTTPRedirectHandler):\n"
        "    def redirect_request(self, *a): return None\n"
        "try: print(u.build_opener(N).open(sys.argv[1], timeout=5).status)\n"
        "except e.HTTPError as x: print(x.code)\n"
    )
    answer = network.run(
        proxy, [sys.executable, "-c", fetch, f"http://{hub.ip}:10101/services/audit/"]
    )
    assert answer.stdout.strip() in ("302", "403"), (
        answer.stderr + (tmp_path / "viewer.log").read_text()
    )


PROXY_SERVICE_ADDRESS = "198.18.0.201"  # the proxy-api Service's "ClusterIP"
# Follows the hub to the provider's form, posts the user, and stops at the hub's
# callback: its answer is the login (a redirect and the hub's login cookie). The
# page after it would spawn, and no Kubernetes API runs in this harness.
LOGIN = """
import re, requests
from urllib.parse import urljoin
s = requests.Session()
page = s.get("http://hub.corp.example:8000/hub/oauth_login", timeout=30)
action = re.search(r'<form[^>]*action="([^"]*)"', page.text)
target = urljoin(page.url, action.group(1)) if action and action.group(1) else page.url
answer = s.post(target, data={"sub": "ada", "action": "allow"}, allow_redirects=False, timeout=30)
while answer.is_redirect and "/hub/oauth_callback" not in answer.headers["Location"]:
    answer = s.get(urljoin(answer.url, answer.headers["Location"]), allow_redirects=False)
callback = s.get(urljoin(answer.url, answer.headers["Location"]), allow_redirects=False, timeout=30)
print(callback.status_code, callback.headers.get("Location"),
      any(c.name.startswith("jupyterhub-") for c in s.cookies))
"""


def services_nat(services: dict[str, str]) -> str:
    """kube-proxy's part: each Service address DNATed to its one pod, before the filter."""
    rules = "\n".join(f"    ip daddr {vip} dnat to {pod}" for vip, pod in services.items())
    return (
        "table ip sovhub_services {\n  chain output {\n"
        "    type nat hook output priority -100; policy accept;\n"
        f"{rules}\n  }}\n}}\n"
    )


class ChartPods(NamedTuple):
    """The chart's pods on one pod network: the identity provider, hub, proxy and a client."""

    idp: Any
    hub: Any
    proxy: Any
    client: Any


def chart_pods(network: PodNetwork, policies: list[dict], user: dict, log: Path) -> ChartPods:
    """Pods for the chart's hub and proxy (egress limited by the rendered NetworkPolicies,
    the Service addresses translated to them), a client pod that reaches the hub's public
    name through the proxy, and a real OIDC provider (oidc-provider-mock) on 443 in a pod
    named as the chart's issuer, logging ``user`` in and writing to ``log``."""
    from sovereign_hub.sandbox.hubprocess import BIN

    names = {"rel-sovereign-hub-hub": SERVICE_ADDRESS,
             "rel-sovereign-hub-proxy-api": PROXY_SERVICE_ADDRESS}  # fmt: skip
    idp = network.add_pod("login.corp.example")
    names["login.corp.example"] = idp.ip
    hub = network.add_pod("hub", hosts=names)
    proxy = network.add_pod("proxy", hosts=names)
    client = network.add_pod("client", hosts={**names, "hub.corp.example": proxy.ip})
    with open(log, "wb") as out:
        provider = network.popen(
            idp,
            [str(BIN / "oidc-provider-mock"), "--host", "0.0.0.0", "--port", "443",
             "--require-nonce", "true", "--user-claims", json.dumps(user)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    wait_listening(network, idp, 443, provider)
    nat = services_nat({SERVICE_ADDRESS: hub.ip, PROXY_SERVICE_ADDRESS: proxy.ip})
    endpoints = [Endpoint("hub", HUB_LABELS, hub.ip), Endpoint("hub", PROXY_LABELS, proxy.ip)]
    for pod, endpoint in zip((hub, proxy), endpoints, strict=True):
        network.enforce(pod, nat)
        network.enforce(pod, nft_ruleset(egress_rules(policies, endpoint, endpoints)))
    network.enforce(client, nat)
    return ChartPods(idp, hub, proxy, client)


def test_the_charts_hub_runs_in_its_pod_and_the_proxy_reaches_it_and_the_viewer(network, tmp_path):
    """The rendered Deployments' commands, files and environment, in pods whose egress is the
    rendered NetworkPolicies; the proxy is configurable-http-proxy as its Deployment says,
    the identity provider a real one (oidc-provider-mock) in a pod of its own on 443.

    Through the proxy a client pod sees the hub's health, the audit viewer and a
    login; the idle culler calls the hub API through the hub Service.
    """
    from sovereign_hub.sandbox.hubprocess import BIN, CHP

    values = tmp_path / "values.yaml"
    state = tmp_path / "state"
    state.mkdir()
    values.write_text(
        yaml.safe_dump(
            {
                "auth": {
                    # The identity provider is another pod, on 443 as the chart's egress expects.
                    "issuer": "http://login.corp.example:443",
                    "callbackUrl": "http://hub.corp.example:8000/hub/oauth_callback",
                    "adminGroups": ["platform-admins"],
                    "auditorGroups": ["auditors"],
                },
                "audit": {"sinks": [{"type": "sqlite", "path": str(state / "audit.sqlite")}]},
                "cull": {"enabled": True, "every": 10},
            }
        )
    )
    docs = render(helm_binary("4.1"), values)
    deployments = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in by_kind(docs, "Deployment")
    }
    policies = [d for d in by_kind(docs, "NetworkPolicy")]
    config = tmp_path / "config"
    config.mkdir()
    for doc in by_kind(docs, "ConfigMap"):
        for name, text in doc["data"].items():
            (config / name).write_text(text)
    secrets_dir = tmp_path / "hub-secrets"
    secrets_dir.mkdir()
    tokens = {"cookie-secret": "ab" * 32, "crypt-key": "cd" * 32, "proxy-token": "p" * 40,
              "metrics-token": "m" * 40}  # fmt: skip
    for name, value in tokens.items():
        (secrets_dir / name).write_text(value)
    (tmp_path / "hmac").write_text("k" * 64)
    (tmp_path / "signing.pem").write_bytes(new_private_key_pem()[0])

    user = {"sub": "ada", "preferred_username": "ada", "groups": ["platform-admins"]}
    _, hub, proxy, client = chart_pods(network, policies, user, tmp_path / "idp.log")
    (tmp_path / "oidc").mkdir()
    (tmp_path / "oidc" / "client-secret").write_text("client-secret-of-the-hub")

    (chp,) = deployments["rel-sovereign-hub-proxy"]["containers"]
    assert chp["command"][0] == "configurable-http-proxy"
    with open(tmp_path / "proxy.log", "wb") as out:
        network.popen(proxy, [str(CHP), *chp["command"][1:]], stdout=out, stderr=subprocess.STDOUT,
                      env={"PATH": "/usr/bin:/bin", "CONFIGPROXY_AUTH_TOKEN": tokens["proxy-token"]})  # fmt: skip
    (container,) = deployments["rel-sovereign-hub-hub"]["containers"]
    args = [a.replace("/usr/local/etc/sovereign-hub", str(config)) for a in container["args"]]
    env = {e["name"]: e["value"] for e in container["env"]}
    env.update(
        PATH=f"{BIN}:/usr/bin:/bin",
        # The pod's mounts, where this test put them (hubconfig.Site.pod reads these).
        SOVEREIGN_HUB_CONFIG_DIR=str(config),
        SOVEREIGN_HUB_STATE_DIR=str(state),
        SOVEREIGN_POLICY_FILE=str(config / "policy.yaml"),
        SOVEREIGN_AUDIT_HMAC_KEY_FILE=str(tmp_path / "hmac"),
        SOVEREIGN_AUDIT_SIGNING_KEY_FILE=str(tmp_path / "signing.pem"),
        SOVEREIGN_HUB_SECRETS_DIR=str(secrets_dir),
        SOVEREIGN_OIDC_SECRET_DIR=str(tmp_path / "oidc"),
    )
    # Kubernetes' API server is emulated, and for want of an address of its own it
    # runs on the hub pod's loopback: the spawner only needs it to exist here.
    with open(tmp_path / "kube.log", "wb") as out:
        kube = network.popen(
            hub,
            [sys.executable, "-m", "sovereign_hub.sandbox.kube", "--api-only",
             "--nodes", str(ROOT / "tests" / "data" / "nodes.yaml"),
             "--state-dir", str(tmp_path / "kube")],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while "kubeconfig:" not in (tmp_path / "kube.log").read_text():
        assert kube.poll() is None, (tmp_path / "kube.log").read_text()
        assert time.monotonic() < deadline, (tmp_path / "kube.log").read_text()
        time.sleep(0.2)
    kubeconfig = (tmp_path / "kube.log").read_text().split("kubeconfig:")[1].split()[0]
    env["KUBECONFIG"] = kubeconfig
    assert container["workingDir"] == "/srv/jupyterhub"
    log = tmp_path / "hub.log"
    with open(log, "wb") as out:
        hub_process = network.popen(hub, [str(BIN / args[0]), *args[1:]], env=env, cwd=state,
                                    stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    fetch = (
        "import urllib.request as u, urllib.error as e, sys\n"
        "class N(u.HTTPRedirectHandler):\n"
        "    def redirect_request(self, *a): return None\n"
        "try:\n"
        "    r = u.build_opener(N).open(sys.argv[1], timeout=5); print(r.status)\n"
        "except e.HTTPError as x: print(x.code, x.headers.get('Location', ''))\n"
        "except OSError as x: print(type(x).__name__)\n"
    )
    deadline = time.monotonic() + 90
    while True:
        assert hub_process.poll() is None, log.read_text()[-5000:]
        health = network.run(
            client, [sys.executable, "-c", fetch, f"http://{proxy.ip}:8000/hub/health"]
        )
        if health.stdout.strip() == "200":
            break
        assert time.monotonic() < deadline, health.stdout + log.read_text()[-5000:]
        time.sleep(0.5)
    # The viewer, started by the hub in its pod, reached through the proxy by the
    # Service's address: its own answer is a redirect to the hub's OAuth.
    deadline = time.monotonic() + 60
    while True:
        viewer = network.run(client, [sys.executable, "-c", fetch,
                                      f"http://{proxy.ip}:8000/services/audit/"])  # fmt: skip
        code, _, location = viewer.stdout.strip().partition(" ")
        if code == "302" and "oauth2/authorize" in location:
            break
        assert time.monotonic() < deadline, viewer.stdout + log.read_text()[-5000:]
        time.sleep(0.5)
    # A login, as a browser in the client pod: hub → identity provider → back; the hub
    # exchanges the code with the provider's pod on 443, through its egress policy.
    login = network.run(client, [sys.executable, "-c", LOGIN], timeout=90)
    status, location, cookie = login.stdout.split() or ["", "", ""]
    assert (status, cookie) == ("302", "True"), (
        login.stdout + login.stderr + log.read_text()[-5000:]
    )
    assert location in ("/hub/", "/hub/spawn")  # logged in: on to the user's server
    # The idle culler, another service in the hub's pod, calls the hub's API by the
    # hub Service's address too (JupyterHub gives services the hub's connect URL).
    deadline = time.monotonic() + 60
    while "200 GET /hub/api/users" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-5000:]
        time.sleep(0.5)


REGIONS = {
    "examplePolicy": {  # the chart example, with a US region added
        "regions": {
            "eu": {"displayName": "EU", "nodeRegions": ["eu-central-1"],
                   "storageClass": "standard", "egressCidrs": ["198.18.0.16/28"]},
            "us": {"displayName": "US", "nodeRegions": ["us-east-1"],
                   "storageClass": "standard", "egressCidrs": ["198.18.0.32/28"]},
        }
    }
}  # fmt: skip
NOTEBOOK_LABELS = {**HUB_LABELS, "app.kubernetes.io/component": "singleuser-server"}


def test_an_eu_notebook_reaches_eu_endpoints_only_never_us_or_the_metadata_address(
    network, tmp_path
):
    """The rendered singleuser and per-region policies on a notebook pod labelled as the
    spawner labels it (sovereign-hub.io/region=eu)."""
    path = tmp_path / "regions.yaml"
    path.write_text(yaml.safe_dump(REGIONS))
    policies = by_kind(render(helm_binary("4.1"), path), "NetworkPolicy")
    eu = network.add_pod("eu-data", ip="198.18.0.20")
    us = network.add_pod("us-data", ip="198.18.0.40")
    metadata = network.add_pod("metadata", ip="198.18.0.60", extra_addresses=["169.254.169.254"])
    notebook = network.add_pod("notebook", ip="198.18.0.10")
    for pod in (eu, us, metadata):
        for port in (443, 80):
            listener = network.popen(pod, [sys.executable, "-c", LISTEN, str(port)])
            wait_listening(network, pod, port, listener)
    # Without the policies everything answers, the metadata address included.
    assert connect(network, notebook, "169.254.169.254", 80) == "ok"
    assert connect(network, notebook, us.ip, 443) == "ok"

    pod = Endpoint("hub", {**NOTEBOOK_LABELS, "sovereign-hub.io/region": "eu"}, notebook.ip)
    network.enforce(notebook, nft_ruleset(egress_rules(policies, pod, [pod])))
    assert connect(network, notebook, eu.ip, 443) == "ok"
    assert connect(network, notebook, us.ip, 443) == "TimeoutError"
    assert connect(network, notebook, "169.254.169.254", 80) == "TimeoutError"
    assert connect(network, notebook, metadata.ip, 443) == "TimeoutError"
