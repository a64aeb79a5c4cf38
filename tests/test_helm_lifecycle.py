"""`helm install`, `upgrade`, `rollback` and `uninstall` of the charts against the emulated
API server.

No real API server can run here: the real Helm 3.18 and 4.1 binaries talk to the
emulated one (sandbox/kube), alone (no scheduler, kubelet or controllers, so a
Deployment makes no pods, which Helm does not wait for). Helm 3.18 writes with
client-side three-way strategic merge patches; Helm 4.1 with server-side apply,
its default. Both keep their releases in Secrets (type helm.sh/release.v1) that
they find again by label selector. One emulated API server serves the module;
each test works in its own namespaces. Objects are read back with kubectl, another
real client.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.sandbox.kube.inventory import load_inventory
from tests.conftest import ROOT, TEST_NODES, require_tool
from tests.test_helm_chart import CHART, HELMS, helm_binary

pytestmark = pytest.mark.integration

REGION_CHART = ROOT / "helm" / "sovereign-region"
KUBECTL = ROOT / ".tools" / "kubectl-1.35" / "kubectl"
# The example policy, the unreleased placeholder digests allowed, and no pre-upgrade backup
# hook: it is a Job, and with no Job controller it would never complete.
HUB_VALUES = ("allowUnreleasedImages=true", "hub.db.backup.enabled=false")
REGION_VALUES = ("gateway.allowFrom={203.0.113.0/24}", "gateway.apiServerCIDRs={10.0.0.1/32}")
# Kept by `helm.sh/resource-policy: keep` (the hub's database and generated keys).
KEPT = {
    "PersistentVolumeClaim/rel-sovereign-hub-hub-db",
    "Secret/rel-sovereign-hub-audit-hmac",
    "Secret/rel-sovereign-hub-audit-signing",
    "Secret/rel-sovereign-hub-hub",
}


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Cluster]:
    """One emulated API server for the module, with no nodes, scheduler or kubelet."""
    state = tmp_path_factory.mktemp("kube")
    with Cluster(load_inventory(TEST_NODES), state, real_nodes=True) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def policy_values(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("values") / "policy.yaml"
    policy = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    path.write_text(yaml.safe_dump({"policy": policy}))
    return path


def tool(binary: Path, api: Cluster, *args: str) -> str:
    done = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "KUBECONFIG": str(api.kubeconfig),
             "HELM_CACHE_HOME": "/tmp/helm-cache", "HELM_CONFIG_HOME": "/tmp/helm-config"},
    )  # fmt: skip
    assert done.returncode == 0, f"{binary.parent.name} {' '.join(args)}:\n{done.stderr}"
    return done.stdout


def kubectl(api: Cluster, *args: str) -> Any:
    return json.loads(tool(require_tool(KUBECTL, "helm"), api, *args, "-o", "json"))


def sets(*values: str) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def rendered(helm: Path, api: Cluster, *args: str) -> set[str]:
    """Kind/name of what the release's manifest holds (hooks aside)."""
    docs = yaml.safe_load_all(tool(helm, api, "get", "manifest", *args))
    return {f"{d['kind']}/{d['metadata']['name']}" for d in docs if d}


def live(api: Cluster, namespace: str, kinds: str) -> set[str]:
    listed = kubectl(api, "get", kinds, "-n", namespace)["items"]
    return {f"{o['kind']}/{o['metadata']['name']}" for o in listed}


def releases(api: Cluster, namespace: str, name: str) -> dict[str, str]:
    """Helm's release records: revision -> status, found as Helm finds them."""
    listed = kubectl(api, "get", "secrets", "-n", namespace, "-l", f"owner=helm,name={name}")
    assert {s["type"] for s in listed["items"]} <= {"helm.sh/release.v1"}
    return {s["metadata"]["labels"]["version"]: s["metadata"]["labels"]["status"]
            for s in listed["items"]}  # fmt: skip


def hub_env(api: Cluster, namespace: str) -> tuple[dict[str, str], dict[str, Any]]:
    deployment = kubectl(api, "get", "deployment", "rel-sovereign-hub-hub", "-n", namespace)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}, deployment["metadata"]


NAMESPACED = "deployments,daemonsets,services,configmaps,secrets,serviceaccounts,roles," \
    "rolebindings,networkpolicies,poddisruptionbudgets,persistentvolumeclaims"  # fmt: skip


@pytest.mark.parametrize("version", sorted(HELMS), ids=lambda v: f"helm-{v}")
def test_install_upgrade_rollback_uninstall_the_hub_chart_emulated_api_server(
    api, policy_values, version
):
    """The hub chart's whole life with each Helm. The upgrade changes a value that adds an
    env entry to the hub's container; an entry someone else added to the live object meanwhile
    survives the upgrade and the rollback (a strategic merge by name for Helm 3, field
    ownership for Helm 4's apply), and the rollback removes only the chart's entry."""
    helm = helm_binary(version)
    ns = f"hub-{version.replace('.', '-')}"
    values = ["-f", str(policy_values), *sets(*HUB_VALUES)]
    tool(helm, api, "install", "rel", str(CHART), "-n", ns, "--create-namespace", *values)

    chart_objects = rendered(helm, api, "rel", "-n", ns)
    namespaced = {o for o in chart_objects if not o.startswith(("ClusterRole",))}
    assert namespaced <= live(api, ns, NAMESPACED)
    # Cluster-scoped kinds are stored without a namespace and listed across all.
    for role in [o for o in chart_objects if o.startswith("ClusterRole")]:
        kind, name = role.split("/")
        assert "namespace" not in kubectl(api, "get", kind.lower(), name)["metadata"]
    assert releases(api, ns, "rel") == {"1": "deployed"}
    env, meta = hub_env(api, ns)
    assert list(env) == ["PYTHONUNBUFFERED", "HOME"]
    assert meta["generation"] == 1
    assert meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")

    # Someone adds an entry to the live Deployment, as `kubectl set env` would.
    extra = {"spec": {"template": {"spec": {"containers": [
        {"name": "hub", "env": [{"name": "OPERATOR_NOTE", "value": "kept"}]}]}}}}  # fmt: skip
    tool(require_tool(KUBECTL, "helm"), api, "patch", "deployment", "rel-sovereign-hub-hub",
         "-n", ns, "--type", "strategic", "-p", json.dumps(extra))  # fmt: skip

    tool(helm, api, "upgrade", "rel", str(CHART), "-n", ns, *values,
         *sets("hub.extraEnv.SOVEREIGN_DEMO=one"))  # fmt: skip
    env, upgraded = hub_env(api, ns)
    assert env == {"PYTHONUNBUFFERED": "1", "HOME": "/tmp", "OPERATOR_NOTE": "kept",
                   "SOVEREIGN_DEMO": "one"}  # fmt: skip
    assert upgraded["uid"] == meta["uid"]
    assert upgraded["generation"] == 3  # the operator's change, then the upgrade's
    assert int(upgraded["resourceVersion"]) > int(meta["resourceVersion"])
    assert releases(api, ns, "rel") == {"1": "superseded", "2": "deployed"}

    tool(helm, api, "rollback", "rel", "1", "-n", ns)
    env, rolled_back = hub_env(api, ns)
    assert env == {"PYTHONUNBUFFERED": "1", "HOME": "/tmp", "OPERATOR_NOTE": "kept"}
    assert rolled_back["generation"] == 4
    assert releases(api, ns, "rel") == {"1": "superseded", "2": "superseded", "3": "deployed"}

    tool(helm, api, "uninstall", "rel", "-n", ns)
    assert live(api, ns, NAMESPACED) == KEPT
    for role in [o for o in chart_objects if o.startswith("ClusterRole")]:
        kind, name = role.split("/")
        listed = kubectl(api, "get", kind.lower(), "--field-selector", f"metadata.name={name}")
        assert listed["items"] == []
    assert releases(api, ns, "rel") == {}


@pytest.mark.parametrize("version", sorted(HELMS), ids=lambda v: f"helm-{v}")
def test_install_the_regional_chart_emulated_api_server(api, version):
    """The regional chart installs with each Helm: its namespace, gateway Deployment, RBAC
    (cluster-scoped and namespaced) and NetworkPolicies are stored as rendered."""
    helm = helm_binary(version)
    ns, release = f"region-{version.replace('.', '-')}", f"r{version.replace('.', '')}"
    tool(helm, api, "install", release, str(REGION_CHART), "-n", ns, "--create-namespace",
         *sets(*REGION_VALUES, f"namespace=users-{release}"))  # fmt: skip
    manifest = [d for d in yaml.safe_load_all(tool(helm, api, "get", "manifest", release, "-n",
                ns)) if d]  # fmt: skip
    for doc in manifest:
        meta = doc["metadata"]
        args = ["get", doc["kind"].lower(), meta["name"]]
        stored = kubectl(api, *args, *(["-n", meta.get("namespace", ns)] if
                         doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding")
                         else []))  # fmt: skip
        assert stored["metadata"]["labels"] == meta.get("labels", {}), args
    assert releases(api, ns, release) == {"1": "deployed"}
    tool(helm, api, "uninstall", release, "-n", ns)


def test_kubectl_explains_and_validates_against_the_emulated_api_server(api):
    """kubectl reads the OpenAPI v3 documents (`kubectl explain`), and its default strict
    validation is done by the server: an unknown field is refused, naming its path."""
    kubectl_bin = require_tool(KUBECTL, "helm")
    explained = tool(kubectl_bin, api, "explain", "deployment.spec.strategy")
    assert "rollingUpdate" in explained
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "typo"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "t"}}, "template": {
                    "metadata": {"labels": {"app": "t"}}, "spec": {"containers": [
                        {"name": "c", "image": "x@sha256:" + "a" * 64, "imagePullPolcy": "Always"}
                    ]}}}}  # fmt: skip
    done = subprocess.run(
        [str(kubectl_bin), "apply", "-n", "default", "-f", "-"], input=json.dumps(manifest),
        capture_output=True, text=True, timeout=60, env={**os.environ, "KUBECONFIG": str(api.kubeconfig)},
    )  # fmt: skip
    assert done.returncode != 0
    assert 'unknown field "spec.template.spec.containers[0].imagePullPolcy"' in done.stderr


def test_kubectl_server_side_apply_conflicts_and_forces_emulated_api_server(api):
    """`kubectl apply --server-side` by two field managers: the second changing the first's
    field is refused with the conflict named, and takes it with --force-conflicts."""
    kubectl_bin = require_tool(KUBECTL, "helm")

    def apply(manager: str, replicas: int, *flags: str) -> subprocess.CompletedProcess[str]:
        manifest = {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "ssa", "namespace": "default"},
                    "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "ssa"}},
                             "template": {"metadata": {"labels": {"app": "ssa"}}, "spec": {
                                 "containers": [{"name": "c", "image": "x@sha256:" + "a" * 64}]}}}}  # fmt: skip
        return subprocess.run(
            [str(kubectl_bin), "apply", "--server-side", f"--field-manager={manager}", *flags,
             "-f", "-"], input=json.dumps(manifest), capture_output=True, text=True, timeout=60,
            env={**os.environ, "KUBECONFIG": str(api.kubeconfig)},
        )  # fmt: skip

    assert apply("one", 1).returncode == 0
    refused = apply("two", 2)
    assert refused.returncode != 0
    assert 'conflict with "one" using apps/v1: .spec.replicas' in refused.stderr
    assert apply("two", 2, "--force-conflicts").returncode == 0
    stored = kubectl(api, "get", "deployment", "ssa", "-n", "default", "--show-managed-fields")
    assert stored["spec"]["replicas"] == 2
    owners = {e["manager"]: e["fieldsV1"] for e in stored["metadata"]["managedFields"]}
    assert "f:replicas" in owners["two"]["f:spec"]
    assert "f:replicas" not in owners["one"]["f:spec"]
