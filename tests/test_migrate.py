"""``sovhub migrate z2jh``: the files it writes pass the real checks an admin runs next.

The produced values are linted and rendered by the real Helm 3.18 and 4.1
binaries against the chart's values.schema.json, and the draft policy is
checked by the real ``sovhub policy check``. ``--resolve`` looks digests up
in a local Debian ``docker-registry``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_program
from tests.test_helm_chart import CHART, by_kind, helm_binary, render, run
from tests.test_z2jh import DATA, DIGEST, images_in, load

SOVHUB = str(Path(sys.executable).with_name("sovhub"))
# What only the admin knows, per fixture: the region's node label values, a
# storage class when z2jh used the cluster's default, and a GPU quota.
ADMIN_INPUTS = {
    "keycloak-gpu-profiles.yaml": ["--gpu-quota", "4"],
    "azuread-postgres-static.yaml": ["--node-region", "westeurope", "--storage-class", "managed"],
    "okta-no-storage.yaml": ["--node-region", "us-east-1", "--storage-class", "gp3"],
}


def sovhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SOVHUB, *args], capture_output=True, text=True, timeout=120)


def migrate(name: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    digests = [arg for image in images_in(load(name)) for arg in ("--digest", f"{image}={DIGEST}")]
    return sovhub("migrate", "z2jh", str(DATA / name), "--out", str(out), *digests, *extra)


@pytest.mark.parametrize("name", sorted(ADMIN_INPUTS))
def test_migrated_values_pass_helm_lint_and_the_policy_passes_policy_check(name, tmp_path):
    done = migrate(name, tmp_path, *ADMIN_INPUTS[name])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "To fill in before `sovhub policy check` passes (0)" in done.stdout
    assert (tmp_path / "report.txt").read_text() in done.stdout
    checked = sovhub("policy", "check", str(tmp_path / "policy.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    values = tmp_path / "values.yaml"
    # The migration names no hub or proxy image; the chart's placeholders need this.
    for version in ("3.18", "4.1"):
        linted = run(helm_binary(version), "lint", "--strict", str(CHART), "-f", str(values),
                     "--set", "allowUnreleasedImages=true")  # fmt: skip
        assert linted.returncode == 0, linted.stdout + linted.stderr
    docs = render(helm_binary("4.1"), values)
    (configmap,) = [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-policy")
    ]
    # Verbatim: the policy is in the values as text, so Helm keeps its profile order.
    assert configmap["data"]["policy.yaml"] == (tmp_path / "policy.yaml").read_text()


def test_a_draft_names_what_to_fill_in_and_exits_1(tmp_path):
    done = sovhub("migrate", "z2jh", str(DATA / "okta-no-storage.yaml"), "--out", str(tmp_path))
    assert done.returncode == 1
    assert "To fill in before `sovhub policy check` passes (3):" in done.stdout
    assert "policy.channels.base-notebook.versions[0].image: the digest of " in done.stdout
    assert "--digest jupyter/base-notebook:latest=sha256:" in done.stdout
    assert "policy.regions.default.nodeRegions" in done.stdout
    # The loader's verdict, at the lines of the written draft.
    assert f"{tmp_path}/policy.yaml:" in done.stdout
    assert "okta-secret" not in "".join(p.read_text() for p in tmp_path.iterdir())
    again = sovhub("migrate", "z2jh", str(DATA / "okta-no-storage.yaml"), "--out", str(tmp_path))
    assert again.returncode == 2
    assert "would overwrite values.yaml, policy.yaml, report.txt; add --force" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--digest", "jupyter/base-notebook:latest"], "--digest takes IMAGE=sha256:<hex>"),
        (["--digest", "x=md5:1"], "--digest takes IMAGE=sha256:<hex>"),
    ],
)
def test_bad_arguments_are_refused_by_name(tmp_path, args, message):
    done = sovhub("migrate", "z2jh", str(DATA / "okta-no-storage.yaml"), "--out", str(tmp_path),
                  *args)  # fmt: skip
    assert done.returncode != 0
    assert message in done.stderr


def test_an_unreadable_values_file_is_named(tmp_path):
    bad = tmp_path / "values.yaml"
    bad.write_text("singleuser: [\n")
    done = sovhub("migrate", "z2jh", str(bad), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert str(bad) in done.stderr


@pytest.fixture
def registry(tmp_path):
    from tests.registry import LocalRegistry

    require_program("docker-registry", "/usr/bin/docker-registry", "docker-registry")
    server = LocalRegistry(tmp_path / "registry")
    yield server
    server.stop()


def test_resolve_looks_digests_up_in_the_registry(tmp_path, registry):
    digest = registry.push_image("team/notebook", "2024.06")
    values = tmp_path / "z2jh.yaml"
    values.write_text(
        yaml.safe_dump(
            {"singleuser": {"image": {"name": f"{registry.host}/team/notebook", "tag": "2024.06"},
                            "cpu": {"limit": 1}, "memory": {"limit": "2G"},
                            "storage": {"dynamic": {"storageClass": "standard"}}},
             "hub": {"config": {"GenericOAuthenticator": {
                 "authorize_url": "https://idp.example.org/realms/a/protocol/openid-connect/auth"
             }}}}
        )
    )  # fmt: skip
    done = sovhub("migrate", "z2jh", str(values), "--out", str(tmp_path / "out"), "--resolve",
                  "--plain-http", "--node-region", "eu-central-1")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    policy = yaml.safe_load((tmp_path / "out" / "policy.yaml").read_text())
    (channel,) = policy["channels"].values()
    assert channel["versions"][0]["image"] == f"{registry.host}/team/notebook@{digest}"
