"""The Helm chart, rendered by the real Helm 3.18 and Helm 4.1 binaries.

Binaries come from `make helm` (.tools/). Every rendered manifest is checked
with kubernetes-validate --strict for Kubernetes 1.30 to 1.37, against the
restricted Pod Security Standard (the spawner's own check), and for the
chart's promises: least-privilege RBAC, per-region egress, the metadata
address blocked, images by digest, resources everywhere.
"""

from __future__ import annotations

import base64
import importlib.util
import ipaddress
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sovereign_hub.audit.signing import new_private_key_pem
from sovereign_hub.audit.store import read
from sovereign_hub.policy import parse_policy
from sovereign_hub.policy.decision import LABEL_PREFIX
from sovereign_hub.sandbox.hubprocess import Hub, free_port
from sovereign_hub.sandbox.oidc import login_via_provider
from sovereign_hub.spawner.security import restricted_violations
from tests.conftest import ROOT, require_tool

CHART = ROOT / "helm" / "sovereign-hub"
HERE = Path(__file__).parent / "helm"
HELMS = {
    "3.18": ROOT / ".tools" / "helm-3.18" / "helm",
    "4.1": ROOT / ".tools" / "helm-4.1" / "helm",
}
KUBERNETES = [f"1.{minor}.0" for minor in range(30, 38)]
METADATA = ipaddress.ip_address("169.254.169.254")
# Custom resources: kubernetes-validate bundles no schema for them.
CUSTOM_KINDS = {"ServiceMonitor", "HTTPRoute"}


def helm_binary(version: str) -> Path:
    return require_tool(HELMS[version], "helm")


@pytest.fixture(params=sorted(HELMS), ids=lambda v: f"helm-{v}")
def helm(request) -> Path:
    return helm_binary(request.param)


@pytest.fixture(scope="module")
def example_policy_values(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("values") / "policy.yaml"
    policy = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    path.write_text(yaml.safe_dump({"policy": policy}))
    return path


def run(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "HELM_CACHE_HOME": "/tmp/helm-cache", "HELM_CONFIG_HOME": "/tmp/helm-config"},
    )  # fmt: skip


def render(
    helm: Path,
    *values: Path,
    sets: tuple[str, ...] = (),
    namespace: str = "hub",
    files: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    # The chart's own defaults carry the unreleased placeholder digests, which render only when
    # allowed; a values file that names released digests is unaffected.
    args = ["template", "rel", str(CHART), "--namespace", namespace,
            "--set", "allowUnreleasedImages=true"]  # fmt: skip
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    for f in files:
        args += ["--set-file", f]
    done = run(helm, *args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(params=["default", "full"])
def manifests(request, example_policy_values) -> list[dict[str, Any]]:
    helm = helm_binary("4.1")
    if request.param == "default":
        return render(helm)
    return render(helm, HERE / "full-values.yaml", example_policy_values)


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job")
    ]


def containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("values", ["default", "full"])
def test_helm_lint_strict(helm, values, example_policy_values):
    # The defaults carry the unreleased placeholder digests, which only render when allowed.
    files = (
        ["--set", "allowUnreleasedImages=true"]
        if values == "default"
        else ["-f", str(HERE / "full-values.yaml"), "-f", str(example_policy_values)]
    )
    done = run(helm, "lint", "--strict", str(CHART), *files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_both_helms_render_the_same_objects(example_policy_values):
    a = render(helm_binary("3.18"), HERE / "full-values.yaml", example_policy_values)
    b = render(helm_binary("4.1"), HERE / "full-values.yaml", example_policy_values)
    names = lambda docs: sorted((d["kind"], d["metadata"]["name"]) for d in docs)  # noqa: E731
    assert names(a) == names(b)


@pytest.mark.parametrize("kubernetes", KUBERNETES)
def test_every_manifest_validates_strictly(manifests, kubernetes):
    for doc in manifests:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, kubernetes, strict=True)


def test_custom_resources_have_the_fields_their_operators_need(example_policy_values):
    docs = render(helm_binary("4.1"), HERE / "full-values.yaml", example_policy_values)
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"] == [
        {
            "port": "http",
            "path": "/hub/metrics",
            "interval": "15s",
            # authenticatePrometheus is on: the scraper's read:metrics token.
            "bearerTokenSecret": {"name": "hub-secrets", "key": "metrics-token"},
        }
    ]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (route,) = by_kind(docs, "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "corp-gateway", "namespace": "gateways"}]
    backend = route["spec"]["rules"][0]["backendRefs"][0]
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    assert backend["name"] in services
    assert backend["port"] in [p["port"] for p in services[backend["name"]]["spec"]["ports"]]


def test_every_pod_meets_the_restricted_standard_with_digests_and_resources(manifests):
    specs = pod_specs(manifests)
    # The Job is the SQLite backup hook (sovereign_hub.hubdb), absent with PostgreSQL.
    assert {"Deployment", "DaemonSet"} <= {name.split("/")[0] for name, _ in specs} <= {
        "Deployment", "DaemonSet", "Job"
    }  # fmt: skip
    for name, spec in specs:
        assert restricted_violations(spec, name) == []
        for c in containers(spec):
            where = f"{name} {c['name']}"
            assert "@sha256:" in c["image"], where
            assert ":" not in c["image"].split("@")[0].split("/")[-1], where  # no tag beside it
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), where
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, where
            assert not c["securityContext"].get("privileged"), where


def test_rbac_is_namespaced_and_least_privilege(manifests):
    # Cluster-wide: the hub reads nodes (the GPU queue's capacity), and nothing else.
    (nodes,) = by_kind(manifests, "ClusterRole")
    assert nodes["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}
    ]
    (binding,) = by_kind(manifests, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == nodes["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rel-sovereign-hub-hub", "namespace": "hub"}
    ]
    (role,) = by_kind(manifests, "Role")
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    allowed = {
        *(("pods", v) for v in ("get", "list", "watch", "create", "delete")),
        *(("persistentvolumeclaims", v) for v in ("get", "list", "watch", "create", "delete")),
        *(("events", v) for v in ("get", "list", "watch")),
    }
    assert granted == allowed
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])
    proxy = next(
        d for d in by_kind(manifests, "Deployment") if d["metadata"]["name"].endswith("-proxy")
    )
    assert proxy["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def egress_blocks(policy: dict) -> list[dict]:
    return [
        peer["ipBlock"]
        for rule in policy["spec"].get("egress", [])
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    ]


def allows(block: dict, address: ipaddress.IPv4Address) -> bool:
    if address not in ipaddress.ip_network(block["cidr"]):
        return False
    return not any(address in ipaddress.ip_network(e) for e in block.get("except", []))


def metadata_ports(policy: dict) -> set[tuple[int | str, str]]:
    """The ports on which a policy lets its pods reach the cloud metadata address."""
    return {
        (port["port"], port.get("protocol", "TCP"))
        for rule in policy["spec"].get("egress", [])
        if any("ipBlock" in peer and allows(peer["ipBlock"], METADATA) for peer in rule["to"])
        for port in rule.get("ports") or [{"port": "any"}]
    }


def test_network_policies_confine_user_pods_by_region_and_block_metadata(example_policy_values):
    docs = render(helm_binary("4.1"), HERE / "full-values.yaml", example_policy_values)
    policies = {p["metadata"]["name"]: p for p in by_kind(docs, "NetworkPolicy")}
    for policy in policies.values():
        # Only DNS, as z2jh's dnsPortsCloudMetadataServer (GKE answers DNS there).
        assert metadata_ports(policy) <= {(53, "UDP"), (53, "TCP")}, policy["metadata"]["name"]
    base = policies["rel-sovereign-hub-singleuser"]
    assert set(base["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    sources = [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
               for rule in base["spec"]["ingress"] for p in rule["from"]]  # fmt: skip
    assert sorted(sources) == ["hub", "proxy"]
    # Nothing outside the cluster without a region policy, but DNS.
    assert all(
        rule["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
        for rule in base["spec"]["egress"]
        if any("ipBlock" in peer for peer in rule["to"])
    )
    policy = yaml.safe_load(example_policy_values.read_text())["policy"]
    for region, spec in policy["regions"].items():
        regional = policies[f"rel-sovereign-hub-singleuser-region-{region}"]
        assert regional["spec"]["podSelector"]["matchLabels"][f"{LABEL_PREFIX}region"] == region
        assert [b["cidr"] for b in egress_blocks(regional)] == spec["egressCidrs"]


def test_a_region_that_allows_everything_still_cannot_reach_the_metadata_address():
    docs = render(
        helm_binary("4.1"),
        sets=("examplePolicy.regions.eu.egressCidrs={0.0.0.0/0,169.254.0.0/16,10.0.0.0/8}",),
    )
    regional = next(
        p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("region-eu")
    )
    blocks = egress_blocks(regional)
    assert [b["cidr"] for b in blocks] == ["0.0.0.0/0", "169.254.0.0/16", "10.0.0.0/8"]
    assert blocks[0]["except"] == ["169.254.169.254/32"]
    assert blocks[1]["except"] == ["169.254.169.254/32"]
    assert "except" not in blocks[2]
    assert not any(allows(b, METADATA) for b in blocks)


def test_the_policy_configmap_is_the_policy_and_a_change_rolls_the_hub(example_policy_values):
    helm = helm_binary("4.1")
    docs = render(helm, example_policy_values)
    (config,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-policy")]
    loaded = parse_policy(config["data"]["policy.yaml"], "policy ConfigMap")
    expected = parse_policy((ROOT / "examples" / "policy.yaml").read_text())
    assert loaded.policy == expected.policy

    def checksum(docs: list[dict]) -> str:
        hub = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-hub"))
        return hub["spec"]["template"]["metadata"]["annotations"]["checksum/policy"]

    changed = render(
        helm, example_policy_values, sets=("policy.channels.pytorch.maxPinAgeDays=30",)
    )
    assert checksum(docs) != checksum(changed)
    assert checksum(docs) == checksum(render(helm, example_policy_values))


def test_the_pre_puller_pulls_every_unrevoked_digest_on_gpu_nodes_too(example_policy_values):
    docs = render(helm_binary("4.1"), example_policy_values)
    (puller,) = by_kind(docs, "DaemonSet")
    spec = puller["spec"]["template"]["spec"]
    pulled = {c["image"] for c in spec["initContainers"]}
    policy = yaml.safe_load(example_policy_values.read_text())["policy"]
    expected = {
        v["image"]
        for ch in policy["channels"].values()
        for v in ch["versions"]
        if not v.get("revoked")
    }
    revoked = {
        v["image"] for ch in policy["channels"].values() for v in ch["versions"] if v.get("revoked")
    }
    assert pulled == expected
    assert not pulled & revoked
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]


def test_secrets_are_generated_once_and_kept_or_referenced(example_policy_values):
    docs = render(helm_binary("4.1"))
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    hmac = secrets["rel-sovereign-hub-audit-hmac"]
    assert hmac["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(hmac["data"]["hmac-key"]) > 40
    full = render(helm_binary("4.1"), HERE / "full-values.yaml", example_policy_values)
    names = {s["metadata"]["name"] for s in by_kind(full, "Secret")}
    # The rest are the admin's existing Secrets; hub.extraFiles are kept in one of ours.
    assert names == {"rel-sovereign-hub-audit-siem", "rel-sovereign-hub-hub-files"}
    hub = next(d for d in by_kind(full, "Deployment") if d["metadata"]["name"].endswith("-hub"))
    volumes = {v["name"]: v for v in hub["spec"]["template"]["spec"]["volumes"]}
    assert volumes["hmac"]["secret"]["secretName"] == "audit-hmac"
    assert volumes["audit-pg"]["secret"]["secretName"] == "audit-pg"
    # No secret value is ever written into a ConfigMap.
    for config in by_kind(full, "ConfigMap"):
        assert "BEGIN CERTIFICATE" not in yaml.safe_dump(config)
    given = render(helm_binary("4.1"), sets=("auth.clientSecret.value=sekrit-value-123",))
    for config in by_kind(given, "ConfigMap"):
        assert "sekrit-value-123" not in yaml.safe_dump(config)
    hub = next(d for d in by_kind(given, "Deployment") if d["metadata"]["name"].endswith("-hub"))
    assert not [
        e for e in hub["spec"]["template"]["spec"]["containers"][0]["env"] if "valueFrom" in e
    ]  # secrets reach the hub as files, not environment


def invalid_files() -> list[Path]:
    return sorted((HERE / "invalid").glob("*.yaml"))


@pytest.mark.parametrize("values", invalid_files(), ids=lambda p: p.stem)
def test_the_schema_rejects_invalid_values_with_their_path(helm, values):
    header = values.read_text().splitlines()[0]
    assert header.startswith("# expect: ")
    path, *words = header.removeprefix("# expect: ").split()
    done = run(helm, "template", "rel", str(CHART), "-f", str(values))
    assert done.returncode != 0
    assert "don't meet the specifications of the schema" in done.stderr
    # Helm 4 prints JSON pointers (at '/hub'), Helm 3 dotted paths (hub: ...).
    dotted = path.strip("/").replace("/", ".") or "(root)"
    assert (
        f"at '{path.rstrip('/') if path != '/' else ''}'" in done.stderr
        or f"- {dotted}:" in done.stderr
    ), done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def test_there_are_at_least_twenty_invalid_values_files():
    assert len(invalid_files()) >= 20


def test_the_committed_values_schema_is_current():
    spec = importlib.util.spec_from_file_location(
        "values_schema", ROOT / "helm" / "values_schema.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (CHART / "values.schema.json").read_text() == module.render(), (
        "run `python helm/values_schema.py`"
    )


def test_notes_tell_the_admin_the_url_and_how_to_check_the_policy(example_policy_values):
    """NOTES.txt, rendered by `helm install --dry-run=client` of Helm 4.1. Helm 3.18's
    client dry run still insists on reaching a cluster, and none can run here."""
    helm = helm_binary("4.1")
    done = run(helm, "install", "rel", str(CHART), "--dry-run=client", "-f", str(HERE / "full-values.yaml"),
               "-f", str(example_policy_values), "--namespace", "hub")  # fmt: skip
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "https://hub.corp.example/" in notes
    assert "sovhub policy check" in notes
    assert "placeholder" not in notes  # real digests given
    refused = run(helm, "install", "rel", str(CHART), "--dry-run=client")
    assert refused.returncode != 0  # placeholder digests are refused unless allowed
    assert "allowUnreleasedImages" in refused.stderr or "digest" in refused.stderr
    default = run(helm, "install", "rel", str(CHART), "--dry-run=client",
                  "--set", "allowUnreleasedImages=true")  # fmt: skip
    assert "unreleased placeholder" in default.stdout.split("NOTES:", 1)[1]


def test_the_generated_hub_config_sets_up_the_sovereign_components(
    tmp_path, monkeypatch, example_policy_values
):
    """Loads the chart's jupyterhub_config.py with the values the chart renders beside it."""
    from traitlets.config.loader import PyFileConfigLoader

    docs = render(helm_binary("4.1"), HERE / "full-values.yaml", example_policy_values,
                  sets=("audit.sinks[0].path=" + str(tmp_path / "audit.sqlite"),))  # fmt: skip
    (config,) = [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-hub-config")
    ]
    (policy,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-policy")]
    for name, text in config["data"].items():
        (tmp_path / name).write_text(text)
    (tmp_path / "policy.yaml").write_text(policy["data"]["policy.yaml"])
    (tmp_path / "hmac").write_text("k" * 64)
    # Only the first (sqlite) sink is kept: the others need the corporate stores.
    values = yaml.safe_load((tmp_path / "values.yaml").read_text())
    values["audit"]["sinks"] = values["audit"]["sinks"][:1]
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    monkeypatch.setenv("SOVEREIGN_HUB_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("SOVEREIGN_HUB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SOVEREIGN_POLICY_FILE", str(tmp_path / "policy.yaml"))
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY_FILE", str(tmp_path / "hmac"))
    (tmp_path / "signing.pem").write_bytes(new_private_key_pem()[0])
    monkeypatch.setenv("SOVEREIGN_AUDIT_SIGNING_KEY_FILE", str(tmp_path / "signing.pem"))
    (tmp_path / "oidc").mkdir()
    (tmp_path / "oidc" / "client-secret").write_text("from-the-secret\n")
    (tmp_path / "secrets").mkdir()
    for name in ("cookie-secret", "crypt-key"):
        (tmp_path / "secrets" / name).write_text(secrets.token_hex(32))
    (tmp_path / "secrets" / "proxy-token").write_text("proxy-token-value")
    monkeypatch.setenv("SOVEREIGN_OIDC_SECRET_DIR", str(tmp_path / "oidc"))
    monkeypatch.setenv("SOVEREIGN_HUB_SECRETS_DIR", str(tmp_path / "secrets"))
    c = PyFileConfigLoader("jupyterhub_config.py", path=str(tmp_path)).load_config()
    try:
        assert c.JupyterHub.spawner_class == "sovereign"
        assert c.JupyterHub.authenticator_class == "sovereign"
        assert c.SovereignSpawner.policy_file == str(tmp_path / "policy.yaml")
        assert c.SovereignSpawner.namespace == "hub"
        assert c.SovereignSpawner.home_size == "50Gi"
        assert c.SovereignSpawner.common_labels["app.kubernetes.io/instance"] == "rel"
        assert c.SovereignSpawner.common_labels["cost-center"] == "research"
        assert c.SovereignAuthenticator.issuer == "https://login.corp.example/realms/corp"
        assert c.SovereignAuthenticator.client_secret == "from-the-secret"
        assert (
            c.SovereignAuthenticator.oauth_callback_url
            == "https://hub.corp.example/hub/oauth_callback"
        )
        assert c.SovereignAuthenticator.admin_groups == {"platform-admins"}
        assert c.SovereignAuthenticator.auditor_groups == {"security-auditors"}
        assert c.JupyterHub.db_url.startswith("postgresql+psycopg://jupyterhub@db.corp.example")
        assert c.ConfigurableHTTPProxy.should_start is False
        assert c.ConfigurableHTTPProxy.api_url == "http://rel-sovereign-hub-proxy-api:8001"
        assert c.JupyterHub.hub_connect_url == "http://rel-sovereign-hub-hub:8081"
        assert c.AuditTrail.on_spool_full == "fail-open"
        assert c.AuditTrail.signing_key_file == str(tmp_path / "signing.pem")
        assert c.AuditTrail.checkpoint_every_records == 500
        assert c.ConfigurableHTTPProxy.auth_token == "proxy-token-value"
        assert len(c.CryptKeeper["keys"][0]) == 32
        assert c.JupyterHub.shutdown_on_logout is True  # hub.extraConfig ran
        culler = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")
        assert "--timeout=7200" in culler["command"]
        assert "--max-age=86400" in culler["command"]
        assert next(r for r in c.JupyterHub.load_roles if r["name"] == "idle-culler")["scopes"] == [
            "list:users", "read:users:activity", "read:servers", "delete:servers"
        ]  # fmt: skip
        assert "log_function" in c.JupyterHub.tornado_settings  # the audit hooks are attached
        viewer = next(s for s in c.JupyterHub.services if s["name"] == "audit")
        assert viewer["url"] == "http://rel-sovereign-hub-hub:10101"
        assert viewer["oauth_client_allowed_scopes"] == ["custom:audit:read"]
        readers = next(r for r in c.JupyterHub.load_roles if r["name"] == "audit-readers")
        assert readers["groups"] == ["security-auditors"]
    finally:
        c.SovereignSpawner.reporter.trail.stop()


def test_the_rendered_policy_passes_sovhub_policy_check(tmp_path, example_policy_values):
    docs = render(helm_binary("4.1"), example_policy_values)
    (policy,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-policy")]
    path = tmp_path / "policy.yaml"
    path.write_text(policy["data"]["policy.yaml"])
    sovhub = Path(sys.executable).with_name("sovhub")
    done = subprocess.run(
        [str(sovhub), "policy", "check", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rendered_hub_config_runs_a_real_hub_against_the_emulated_cluster(
    kube, tmp_path, example_policy_values, oidc_ana
):
    """The chart's jupyterhub_config.py and values, in a real JupyterHub on the emulated cluster.

    The only overrides are the addresses a cluster's Service DNS would give
    (hub and proxy on 127.0.0.1, the proxy started by the hub), set through
    the chart's own `hub.extraConfig`, plus the test's admin service.
    """
    port, hub_port, proxy_api = free_port(), free_port(), free_port()
    addresses = (
        f'c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"\n'
        f'c.JupyterHub.hub_connect_url = "http://127.0.0.1:{hub_port}"\n'
        "c.ConfigurableHTTPProxy.should_start = True\n"
        f'c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"\n'
    )
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "allowUnreleasedImages": True,  # the hub runs from the venv, not an image
                "hub": {"extraConfig": {"99-addresses": addresses}},
                "auth": {
                    "issuer": oidc_ana.issuer,
                    "callbackUrl": f"http://127.0.0.1:{port}/hub/oauth_callback",
                    "attributeClaims": {"country": "country"},
                    "clientSecret": {"value": "test-client-secret"},
                },
                "audit": {
                    "sinks": [{"type": "sqlite", "path": str(tmp_path / "audit.sqlite")}],
                    # A checkpoint after every record, so this short run's trail is signed.
                    "checkpoints": {"everyRecords": 1},
                },
            }
        )
    )
    docs = render(helm_binary("4.1"), example_policy_values, values, namespace=kube.namespace)
    config_dir = tmp_path / "chart"
    config_dir.mkdir()
    for doc in by_kind(docs, "ConfigMap"):
        for name, text in doc["data"].items():
            (config_dir / name).write_text(text)
    (config_dir / "hmac").write_text(secrets.token_hex(32))
    # The signing key exactly as the chart generates it (sprig's genPrivateKey "ed25519").
    (signing,) = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"].endswith("-signing")]
    (config_dir / "signing.pem").write_bytes(base64.b64decode(signing["data"]["signing-key"]))
    (config_dir / "oidc").mkdir()
    (config_dir / "oidc" / "client-secret").write_text("test-client-secret")
    env = {
        "KUBECONFIG": str(kube.kubeconfig),
        "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
        "SOVEREIGN_HUB_CONFIG_DIR": str(config_dir),
        "SOVEREIGN_HUB_STATE_DIR": str(tmp_path / "state"),
        "SOVEREIGN_POLICY_FILE": str(config_dir / "policy.yaml"),
        "SOVEREIGN_AUDIT_HMAC_KEY_FILE": str(config_dir / "hmac"),
        "SOVEREIGN_AUDIT_SIGNING_KEY_FILE": str(config_dir / "signing.pem"),
        "SOVEREIGN_OIDC_SECRET_DIR": str(config_dir / "oidc"),
        "SOVEREIGN_HUB_SECRETS_DIR": str(config_dir / "no-such-dir"),  # env fallbacks
    }
    (tmp_path / "state").mkdir()
    chart_config = config_dir / "jupyterhub_config.py"
    # The chart's file as JupyterHub would load it; configure() keeps the
    # test's admin service and role that Hub's base config defines.
    test_admin = (
        "import runpy\n"
        f"runpy.run_path({str(chart_config)!r}, init_globals={{'get_config': lambda: c}})\n"
    )
    hub = Hub(tmp_path / "hub", test_admin, env=env, port=port)
    try:
        _, page = login_via_provider(hub.url, "ana")
        assert page.status_code == 200
        services = {s["name"] for s in hub.api("GET", "/services").json().values()}
        assert "idle-culler" in services
        log = hub.log_path.read_text()
        assert "Starting managed service idle-culler" in log
    finally:
        hub.stop()
    kinds = {r["schema"].rstrip("/").split("/")[-2] for r in read(str(tmp_path / "audit.sqlite"))}
    assert {"login", "policy-loaded"} <= kinds
    # Anyone with the public key alone (as NOTES tells the admin to derive it) can verify.
    public = subprocess.run(
        [sys.executable, "-m", "sovereign_hub.cli", "audit", "public-key", "-"],
        input=(config_dir / "signing.pem").read_bytes(), capture_output=True, timeout=60,
    )  # fmt: skip
    assert public.returncode == 0, public.stderr
    (tmp_path / "audit.pub").write_bytes(public.stdout)

    # The hub's own HMAC key, whatever another test left in this process's environment.
    verify_env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_AUDIT_")}
    verify_env["SOVEREIGN_AUDIT_HMAC_KEY_FILE"] = str(config_dir / "hmac")

    def verify(public: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sovereign_hub.cli", "audit", "verify",
             str(tmp_path / "audit.sqlite"), "--public-key", str(public)],
            capture_output=True, text=True, timeout=60, env=verify_env,
        )  # fmt: skip

    verified = verify(tmp_path / "audit.pub")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "checked: signed checkpoints" in verified.stdout
    assert "checkpoint" in verified.stdout
    # The checkpoints are signed with the chart's key: another key does not verify them.
    (tmp_path / "other.pub").write_bytes(new_private_key_pem()[1])
    assert verify(tmp_path / "other.pub").returncode != 0


CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
INSTALL_GUIDE = ROOT / "docs" / "howto" / "install-with-helm.md"


def checkov_scan(folder: Path, rendered: str) -> tuple[dict[str, Any], set[tuple[str, str]]]:
    """checkov's Kubernetes checks on ``rendered`` manifests, offline (`unshare -n`,
    --skip-download): its summary, and the failed checks as (check id, Kind/name)."""
    (folder / "chart.yaml").write_text(rendered)
    scan = subprocess.run(
        ["unshare", "-n", str(CHECKOV), "-d", str(folder), "--framework", "kubernetes",
         "--skip-download", "--quiet", "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(scan.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = {
        (c["check_id"], c["resource"].split(".", 2)[0] + "/" + c["resource"].split(".", 2)[2])
        for c in report["results"]["failed_checks"]
    }
    return report["summary"], failed


def documented_exceptions() -> set[tuple[str, str]]:
    """(check id, resource) pairs from the guide's table of accepted checkov findings."""
    rows = re.findall(r"^\| `(CKV2?_K8S_\d+)` \| `([^`]+)` \|", INSTALL_GUIDE.read_text(), re.M)
    return set(rows)


@pytest.mark.parametrize("values", ["default", "scheduling"])
def test_checkov_finds_nothing_but_the_documented_exceptions(
    tmp_path, values, example_policy_values
):
    """checkov's Kubernetes checks on the default render, and with the scheduling objects on
    (user scheduler, PriorityClasses, placeholders), offline (`unshare -n`, --skip-download)."""
    require_tool(CHECKOV, "checkov")
    files = (
        []
        if values == "default"
        else ["-f", str(example_policy_values), "-f", str(HERE / "scheduling-values.yaml")]
    )
    done = run(helm_binary("4.1"), "template", "rel", str(CHART), "--namespace", "hub",
               "--set", "allowUnreleasedImages=true", *files)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary, failed = checkov_scan(tmp_path, done.stdout)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 200
    allowed = documented_exceptions()
    assert allowed, "the install guide lists no exceptions"
    assert failed <= allowed, f"undocumented findings: {sorted(failed - allowed)}"
