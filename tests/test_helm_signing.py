"""The chart's checkpoint signing key: generated, kept across upgrades, mounted, published.

Renders use the real Helm binaries. The "kept across upgrades" test needs
`lookup` to see a cluster: no real API server can run here, so Helm 3.18
renders with `--dry-run=server` against the emulated API server
(sandbox/kube). Helm 4.1 is not used there: it maps every kind it renders
through discovery, and the emulator serves no apps/v1 discovery document.
"""

# ruff: noqa: F811 - the fixtures imported from test_helm_chart are test arguments here
from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest
import yaml

from sovereign_hub.audit.signing import KeyFileError, Signer, new_private_key_pem
from tests.test_helm_chart import (  # noqa: F401 - helm and example_policy_values are fixtures
    CHART,
    HERE,
    by_kind,
    example_policy_values,
    helm,
    helm_binary,
    render,
)

NAME = "rel-sovereign-hub"


def one(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return doc


def hub_values(docs: list[dict]) -> dict:
    config = one(docs, "ConfigMap", f"{NAME}-hub-config")
    return yaml.safe_load(config["data"]["values.yaml"])


def test_a_new_install_generates_an_ed25519_key_the_hub_can_sign_with(helm):
    docs = render(helm)
    secret = one(docs, "Secret", f"{NAME}-audit-signing")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pem = base64.b64decode(secret["data"]["signing-key"])
    # The same loader the hub's AuditTrail uses: sprig's key is PKCS#8 Ed25519.
    signer = Signer.from_pem(pem, source="the rendered Secret")
    assert signer.key_id.startswith("e-")
    assert b"PUBLIC" in signer.public_pem()
    # Each render without a cluster makes a new key (what `lookup` prevents on upgrade).
    again = one(render(helm), "Secret", f"{NAME}-audit-signing")
    assert again["data"]["signing-key"] != secret["data"]["signing-key"]


def test_the_hub_mounts_the_key_and_is_told_to_sign(helm):
    docs = render(helm)
    pod = one(docs, "Deployment", f"{NAME}-hub")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["signing"]["secret"] == {
        "secretName": f"{NAME}-audit-signing",
        "items": [{"key": "signing-key", "path": "key.pem"}],
    }
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    # sovereign_hub.hubconfig.Site.pod's default signing_key_file is this mount's key.pem.
    assert mounts["signing"] == {
        "name": "signing",
        "mountPath": "/etc/sovereign-hub/audit/signing",
        "readOnly": True,
    }
    assert hub_values(docs)["audit"]["signing"] is True
    assert hub_values(docs)["audit"]["checkpoints"] == {"everyRecords": 1000, "everySeconds": 60}
    # No private key in any ConfigMap.
    for config in by_kind(docs, "ConfigMap"):
        assert "PRIVATE KEY" not in yaml.safe_dump(config)


def test_signing_off_mounts_nothing_and_generates_nothing(helm):
    docs = render(helm, sets=("audit.signingKey.enabled=false",))
    assert not [s for s in by_kind(docs, "Secret") if s["metadata"]["name"].endswith("-signing")]
    pod = one(docs, "Deployment", f"{NAME}-hub")["spec"]["template"]["spec"]
    assert "signing" not in {v["name"] for v in pod["volumes"]}
    assert hub_values(docs)["audit"]["signing"] is False


def test_an_existing_secret_is_referenced_and_public_keys_are_published(
    helm, example_policy_values
):
    docs = render(helm, HERE / "full-values.yaml", example_policy_values)
    assert not [s for s in by_kind(docs, "Secret") if s["metadata"]["name"].endswith("-signing")]
    pod = one(docs, "Deployment", f"{NAME}-hub")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["signing"]["secret"]["secretName"] == "audit-signing"
    assert volumes["signing"]["secret"]["items"] == [{"key": "ed25519.pem", "path": "key.pem"}]
    published = one(docs, "ConfigMap", f"{NAME}-audit-public-keys")["data"]
    assert list(published) == ["public-key-0.pem"]
    assert published["public-key-0.pem"].startswith("-----BEGIN PUBLIC KEY-----\n")


def test_the_public_key_command_turns_the_secret_into_what_verifiers_need(tmp_path):
    """`sovhub audit public-key -`, fed as NOTES.txt says (the Secret's PEM on stdin)."""
    private, public, kid = new_private_key_pem()
    done = subprocess.run(
        [sys.executable, "-m", "sovereign_hub.cli", "audit", "public-key", "-"],
        input=private, capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == public
    assert kid in done.stderr.decode()
    (tmp_path / "not-a-key").write_text("hello")
    refused = subprocess.run(
        [sys.executable, "-m", "sovereign_hub.cli", "audit", "public-key", str(tmp_path / "not-a-key")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "not-a-key: not an unencrypted PEM private key" in refused.stderr
    with pytest.raises(KeyFileError, match="stdin: not an unencrypted PEM"):
        Signer.from_pem(b"garbage", source="stdin")


def test_notes_say_where_the_key_is_and_how_to_publish_it():
    done = subprocess.run(
        [str(helm_binary("4.1")), "install", "rel", str(CHART), "--dry-run=client",
         "--namespace", "hub", "--set", "allowUnreleasedImages=true"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HELM_CACHE_HOME": "/tmp/helm-cache", "HELM_CONFIG_HOME": "/tmp/helm-config"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert f"secret {NAME}-audit-signing" in notes
    assert "jsonpath='{.data.signing-key}'" in notes
    assert "sovhub audit public-key -" in notes
    assert "audit.signingKey.publicKeys[0]=audit-signing.pub" in notes


async def test_an_upgrade_keeps_the_key_the_cluster_holds_emulated_api_server(kube, core):
    """Helm 3.18 `--dry-run=server` against the emulated API server: `lookup` finds the
    Secrets of the first install, and the upgrade renders the same keys, not new ones."""
    await core.create_namespace({"metadata": {"name": "hub"}})
    private = new_private_key_pem()[0]
    kept = {
        f"{NAME}-audit-signing": {"signing-key": private},
        f"{NAME}-audit-hmac": {"hmac-key": b"h" * 64},
        f"{NAME}-hub": {n: n.encode() * 4 for n in
                        ("cookie-secret", "crypt-key", "proxy-token", "metrics-token")},
    }  # fmt: skip
    for name, data in kept.items():
        body = {k: base64.b64encode(v).decode() for k, v in data.items()}
        await core.create_namespaced_secret("hub", {"metadata": {"name": name}, "data": body})
    done = subprocess.run(
        [str(helm_binary("3.18")), "template", "rel", str(CHART), "--namespace", "hub",
         "--set", "allowUnreleasedImages=true", "--dry-run=server",
         "--disable-openapi-validation"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "KUBECONFIG": str(kube.kubeconfig),
             "HELM_CACHE_HOME": "/tmp/helm-cache", "HELM_CONFIG_HOME": "/tmp/helm-config"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    for name, data in kept.items():
        rendered = one(docs, "Secret", name)["data"]
        assert {k: base64.b64decode(v) for k, v in rendered.items()} == data, name
