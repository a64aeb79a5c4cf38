"""The regional chart (helm/sovereign-region), rendered by the real Helm 3.18 and 4.1 binaries.

Checked as the hub chart is: strict lint, kubernetes-validate --strict for Kubernetes
1.30 to 1.37, the restricted Pod Security Standard (the spawner's own check), images by
digest, least-privilege RBAC, NetworkPolicies, and a schema that refuses bad values with
their path. The gateway's command line is parsed by ``sovereign-gateway``'s own parser.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sovereign_hub.gateway.main import parser as gateway_parser
from sovereign_hub.spawner.security import restricted_violations
from tests.conftest import ROOT, require_tool
from tests.test_helm_chart import (
    CHECKOV,
    HELMS,
    KUBERNETES,
    by_kind,
    checkov_scan,
    containers,
    helm_binary,
    pod_specs,
    run,
)

CHART = ROOT / "helm" / "sovereign-region"


@pytest.fixture(params=sorted(HELMS), ids=lambda v: f"helm-{v}")
def helm(request) -> Path:
    return helm_binary(request.param)


def render(helm: Path, *sets: str) -> list[dict[str, Any]]:
    args = ["template", "us", str(CHART), "--namespace", "default"]
    for s in sets:
        args += ["--set", s]
    done = run(helm, *args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


FLAT = ("gateway.enabled=false", "singleuser.allowFrom={10.20.0.0/16}")
GATEWAY = ("gateway.allowFrom={203.0.113.0/24}", "gateway.apiServerCIDRs={10.0.0.1/32}")


ENTRY = (
    *GATEWAY,
    "gateway.entry.enabled=true",
    "gateway.entry.publicUrl=https://us.hub.example",
    "gateway.entry.hubUrl=https://hub.example",
    "gateway.entry.service.type=ClusterIP",
    "gateway.entry.ingress.enabled=true",
    "gateway.entry.ingress.className=nginx",
    "gateway.entry.ingress.controllerNamespaceSelector.kubernetes\\.io/metadata\\.name=ingress",
)
"""The gateway with the region's entry point for browsers, behind an Ingress."""
RENDERS = {"gateway": GATEWAY, "flat": FLAT, "entry": ENTRY}


@pytest.fixture(params=sorted(RENDERS))
def manifests(request) -> list[dict[str, Any]]:
    return render(helm_binary("4.1"), *RENDERS[request.param])


def named(docs: list[dict], kind: str, suffix: str) -> dict:
    (doc,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    return doc


def test_helm_lint_strict(helm):
    sets = [arg for s in GATEWAY for arg in ("--set", s)]
    done = run(helm, "lint", "--strict", str(CHART), *sets)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("service", ["LoadBalancer", "NodePort"])
def test_an_exposed_gateway_open_to_anywhere_is_refused_unless_asked_for(helm, service):
    """The defaults (a LoadBalancer, no allowFrom) would take connections from the whole
    internet: the chart refuses them, naming both ways out."""
    done = run(helm, "template", "us", str(CHART), "--set", f"gateway.service.type={service}")
    assert done.returncode != 0
    assert f"gateway.service.type is {service} and gateway.allowFrom is empty" in done.stderr
    assert "gateway.allowFromAnywhere=true" in done.stderr

    docs = render(helm, f"gateway.service.type={service}", "gateway.allowFromAnywhere=true")
    assert "loadBalancerSourceRanges" not in named(docs, "Service", "-gateway")["spec"]
    (ingress,) = named(docs, "NetworkPolicy", "-gateway")["spec"]["ingress"]
    assert "from" not in ingress  # from anywhere, as asked


def test_a_cluster_ip_gateway_needs_no_allow_from(helm):
    docs = render(helm, "gateway.service.type=ClusterIP")
    assert named(docs, "Service", "-gateway")["spec"]["type"] == "ClusterIP"


def test_both_helms_render_the_same_objects():
    a, b = (render(helm_binary(v), *GATEWAY) for v in sorted(HELMS))
    assert a == b


@pytest.mark.parametrize("kubernetes", KUBERNETES)
def test_every_manifest_validates_strictly(manifests, kubernetes):
    for doc in manifests:
        kubernetes_validate.validate(doc, kubernetes, strict=True)


def test_the_gateway_pod_is_restricted_by_digest_and_runs_the_gateways_own_options():
    docs = render(helm_binary("4.1"), *GATEWAY)
    (name, spec), *others = pod_specs(docs)
    assert others == []
    assert restricted_violations(spec, name) == []
    (c,) = containers(spec)
    assert "@sha256:" in c["image"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    command, *argv = c["command"]
    assert command == "sovereign-gateway"
    args = gateway_parser().parse_args(argv)  # a renamed option fails here, not in a cluster
    assert args.namespace == "jupyter"
    assert args.client_name == []  # the default: the client CA alone decides (and it warns)
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {str(Path(args.tls_cert).parent), str(Path(args.client_ca).parent)} <= mounts
    assert spec["serviceAccountName"].endswith("-gateway")
    namespace = named(docs, "Namespace", "jupyter")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert named(docs, "PodDisruptionBudget", "-gateway")["spec"]["maxUnavailable"] == 1


def test_client_names_become_the_gateways_client_name_options():
    docs = render(helm_binary("4.1"), *GATEWAY, "gateway.clientNames={hub-proxy,hub-proxy.jupyter}")
    ((_, spec),) = pod_specs(docs)
    (c,) = containers(spec)
    args = gateway_parser().parse_args(c["command"][1:])
    assert args.client_name == ["hub-proxy", "hub-proxy.jupyter"]


def granted(role: dict) -> set[tuple[str, str]]:
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])
    return {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}


def test_rbac_is_least_privilege_for_the_hub_and_the_gateway(manifests):
    hub = named(manifests, "Role", "sovereign-hub")
    assert granted(hub) == {
        *(("pods", v) for v in ("get", "list", "watch", "create", "delete")),
        *(("persistentvolumeclaims", v) for v in ("get", "list", "watch", "create", "delete")),
        *(("events", v) for v in ("get", "list", "watch")),
    }
    (nodes,) = by_kind(manifests, "ClusterRole")
    assert granted(nodes) == {("nodes", v) for v in ("get", "list", "watch")}
    token = named(manifests, "Secret", "sovereign-hub-token")
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "sovereign-hub"
    gateways = [r for r in by_kind(manifests, "Role") if r["metadata"]["name"].endswith("-gateway")]
    for role in gateways:
        assert granted(role) == {("pods", v) for v in ("get", "list", "watch")}
    assert all(sa.get("automountServiceAccountToken") is False
               for sa in by_kind(manifests, "ServiceAccount"))  # fmt: skip


def test_user_pods_take_connections_from_the_gateway_only_or_the_hub_proxy_when_flat():
    gateway = named(render(helm_binary("4.1"), *GATEWAY), "NetworkPolicy", "-singleuser-ingress")
    (rule,) = gateway["spec"]["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert rule["ports"] == [{"port": 8888, "protocol": "TCP"}]

    flat = render(helm_binary("4.1"), *FLAT)
    assert not by_kind(flat, "Deployment")
    (rule,) = named(flat, "NetworkPolicy", "-singleuser-ingress")["spec"]["ingress"]
    assert rule["from"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]


def test_the_gateway_takes_https_only_from_the_hubs_networks_and_reaches_only_notebooks():
    docs = render(helm_binary("4.1"), *GATEWAY)
    policy = named(docs, "NetworkPolicy", "-gateway")
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["from"] == [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    assert ingress["ports"] == [{"port": 8443, "protocol": "TCP"}]
    to_pods, dns, api = policy["spec"]["egress"]
    assert to_pods["to"] == [{"podSelector": {"matchLabels": {"component": "singleuser-server"}}}]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    service = named(docs, "Service", "-gateway")
    assert service["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]


def test_the_entry_point_is_a_second_listener_behind_its_ingress_and_network_policy():
    docs = render(helm_binary("4.1"), *ENTRY)
    ((name, spec),) = pod_specs(docs)
    assert restricted_violations(spec, name) == []
    (c,) = containers(spec)
    args = gateway_parser().parse_args(c["command"][1:])
    assert (args.public_port, args.port) == (8444, 8443)
    assert args.public_url == "https://us.hub.example"
    assert args.hub_url == "https://hub.example"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert str(Path(args.public_tls_cert).parent) in mounts
    assert Path(args.public_tls_key).parent == Path(args.public_tls_cert).parent
    assert {"name": "entry", "containerPort": 8444} in c["ports"]

    service = named(docs, "Service", "-entry")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "entry"}]
    ingress = named(docs, "Ingress", "-entry")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [
        {"hosts": ["us.hub.example"], "secretName": "sovereign-gateway-entry-tls"}
    ]
    (rule,) = ingress["rules"]
    assert rule["host"] == "us.hub.example"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"].endswith("-entry")

    # The hub's proxy still only from its networks; browsers only through the controller.
    hub, browsers = named(docs, "NetworkPolicy", "-gateway")["spec"]["ingress"]
    assert hub["ports"] == [{"port": 8443, "protocol": "TCP"}]
    assert hub["from"] == [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    assert browsers["ports"] == [{"port": 8444, "protocol": "TCP"}]
    assert browsers["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
    ]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ((), "gateway.entry.enabled needs gateway.entry.publicUrl"),
        (
            ("gateway.entry.publicUrl=https://us.example",),
            "gateway.entry.service.type is LoadBalancer and gateway.entry.allowFrom is empty",
        ),
        (
            ("gateway.entry.publicUrl=https://us.example", "gateway.entry.port=8443"),
            "gateway.entry.port 8443 is gateway.port",
        ),
        (
            (
                "gateway.entry.publicUrl=https://us.example",
                "gateway.entry.service.type=ClusterIP",
                "gateway.entry.ingress.enabled=true",
            ),
            "needs gateway.entry.ingress.controllerNamespaceSelector",
        ),
    ],
)
def test_an_entry_point_missing_its_url_or_open_to_anywhere_is_refused(helm, sets, message):
    args = ["template", "us", str(CHART)]
    for s in (*GATEWAY, "gateway.entry.enabled=true", *sets):
        args += ["--set", s]
    done = run(helm, *args)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr

    if "allowFrom is empty" in message:
        docs = render(helm, *GATEWAY, "gateway.entry.enabled=true", *sets,
                      "gateway.entry.allowFromAnywhere=true")  # fmt: skip
        _, browsers = named(docs, "NetworkPolicy", "-gateway")["spec"]["ingress"]
        assert "from" not in browsers  # from anywhere, as asked
        assert "loadBalancerSourceRanges" not in named(docs, "Service", "-entry")["spec"]


CLUSTER_IP_ENTRY = (
    *GATEWAY,
    "gateway.entry.enabled=true",
    "gateway.entry.publicUrl=https://us.hub.example",
    "gateway.entry.service.type=ClusterIP",
)
"""An entry point behind a ClusterIP Service, with nothing yet saying who may reach it."""


def test_a_cluster_ip_entry_point_open_to_every_pod_is_refused(helm):
    """A ClusterIP Service keeps the entry port off the outside, not off the cluster: with no
    from list its NetworkPolicy would admit every pod, other users' notebooks included."""
    args = ["template", "us", str(CHART)]
    for s in CLUSTER_IP_ENTRY:
        args += ["--set", s]
    done = run(helm, *args)
    assert done.returncode != 0
    assert "gateway.entry.service.type is ClusterIP with no gateway.entry.allowFrom" in done.stderr
    assert "open to every pod in the cluster" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("sets", "admitted"),
    [
        (
            ("gateway.entry.allowFrom={10.30.0.0/16}",),
            [{"ipBlock": {"cidr": "10.30.0.0/16"}}],
        ),
        (
            (
                "gateway.entry.ingress.enabled=true",
                "gateway.entry.ingress.controllerNamespaceSelector.team=ingress",
            ),
            [{"namespaceSelector": {"matchLabels": {"team": "ingress"}}}],
        ),
        (
            (
                "gateway.entry.ingress.enabled=true",
                "gateway.entry.ingress.controllerNamespaceSelector.team=ingress",
                "gateway.entry.ingress.controllerPodSelector.app=ingress-nginx",
            ),
            [
                {
                    "namespaceSelector": {"matchLabels": {"team": "ingress"}},
                    "podSelector": {"matchLabels": {"app": "ingress-nginx"}},
                }
            ],
        ),
        (("gateway.entry.allowFromAnywhere=true",), None),  # asked for: no from list
    ],
    ids=["allowFrom", "ingress-namespace", "ingress-pods", "allowFromAnywhere"],
)
def test_a_cluster_ip_entry_point_admits_only_what_its_values_name(helm, sets, admitted):
    docs = render(helm, *CLUSTER_IP_ENTRY, *sets)
    _, browsers = named(docs, "NetworkPolicy", "-gateway")["spec"]["ingress"]
    assert browsers["ports"] == [{"port": 8444, "protocol": "TCP"}]
    assert browsers.get("from") == admitted


@pytest.mark.parametrize(
    ("sets", "path", "word"),
    [
        (("gateway.entry.publicUrl=https://us.example/lab",), "/gateway/entry/publicUrl", None),
        (("gateway.entry.publicUrl=http://us.example",), "/gateway/entry/publicUrl", None),
        (("gateway.image.digest=latest",), "/gateway/image/digest", None),
        (("gateway.replicas=0",), "/gateway/replicas", None),
        (("gateway.port=443",), "/gateway/port", None),
        (("gateway.allowFrom={everywhere}",), "/gateway/allowFrom/0", None),
        (("gateway.service.type=ExternalName",), "/gateway/service/type", "LoadBalancer"),
        (("namespace=Jupyter_NS",), "/namespace", None),
        (("gateway.clientNames[0]= hub-proxy",), "/gateway/clientNames/0", None),
        (("hubAccount.readNodez=true",), "/hubAccount", "readNodez"),
        (("gateway.resources.limits=null",), "/gateway/resources", "limits"),
    ],
)
def test_the_schema_rejects_bad_values_with_their_path(helm, sets, path, word):
    args = ["template", "us", str(CHART)]
    for s in sets:
        args += ["--set", s]
    done = run(helm, *args)
    assert done.returncode != 0
    assert "don't meet the specifications of the schema" in done.stderr
    dotted = path.strip("/").replace("/", ".")
    assert f"at '{path}'" in done.stderr or f"- {dotted}" in done.stderr, done.stderr
    # Helm 3 and 4 word a failed minimum or pattern differently; a wrong key or value is
    # named by both.
    assert word is None or word in done.stderr, done.stderr


def test_checkov_finds_nothing_but_the_documented_exception(tmp_path):
    """checkov's Kubernetes checks on the gateway render with its entry point (a superset of
    the gateway's own: one scan), offline (`unshare -n`, --skip-download); the accepted
    findings are the how-to's table."""
    require_tool(CHECKOV, "checkov")
    sets = [arg for s in ENTRY for arg in ("--set", s)]
    done = run(helm_binary("4.1"), "template", "us", str(CHART), *sets)
    assert done.returncode == 0, done.stderr
    summary, failed = checkov_scan(tmp_path, done.stdout)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 100
    guide = ROOT / "docs" / "howto" / "run-a-region-in-its-own-cluster.md"
    allowed = set(re.findall(r"^\| `(CKV2?_K8S_\d+)` \| `([^`]+)` \|", guide.read_text(), re.M))
    assert failed == allowed
