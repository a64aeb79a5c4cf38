"""``sovhub policy``: exit codes, text and JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sovereign_hub.cli import main

CORPUS = Path(__file__).parent / "policy_corpus"


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_check_valid_prints_one_line_summary(capsys, example_policy_path):
    code, out = run(capsys, "policy", "check", str(example_policy_path))
    assert code == 0
    assert out.count("\n") == 1
    assert "valid: 2 regions, 2 GPU types, 2 channels (3 versions), 3 profiles" in out


def test_check_invalid_lists_every_problem_and_exits_1(capsys):
    doc = CORPUS / "42-group-region-not-allowed-for-profile.yaml"
    code, out = run(capsys, "policy", "check", str(doc))
    assert code == 1
    assert f"{doc}:40:" in out
    assert "groups.team.profiles[1]" in out


def test_check_json(capsys, example_policy_path):
    code, out = run(capsys, "policy", "check", "--json", str(CORPUS / "07-unknown-channel.yaml"))
    data = json.loads(out)
    assert code == 1
    assert data["valid"] is False
    assert data["problems"][0]["path"] == "profiles.cpu.channel"
    assert data["problems"][0]["line"] == 27
    code, out = run(capsys, "policy", "check", "--json", str(example_policy_path))
    data = json.loads(out)
    assert code == 0
    assert data["valid"]
    assert len(data["sha256"]) == 64


def test_explain_allowed_gpu_request(capsys, example_policy_path):
    code, out = run(
        capsys,
        "policy",
        "explain",
        str(example_policy_path),
        "--user",
        "ana",
        "--groups",
        "eu-researchers",
        "--profile",
        "gpu-a100",
        "--json",
    )
    data = json.loads(out)
    assert code == 0
    assert [e["profile"] for e in data["entitlements"]] == ["cpu-small", "gpu-a100", "gpu-slice"]
    plan = data["decision"]["plan"]
    assert plan["region"] == "eu"
    assert plan["gpu"]["resource"] == "nvidia.com/gpu"
    assert plan["image"]["image"].startswith("quay.io/jupyter/pytorch-notebook@sha256:")


def test_explain_denied_exits_3_with_reason(capsys, example_policy_path):
    code, out = run(
        capsys,
        "policy",
        "explain",
        str(example_policy_path),
        "--user",
        "bob",
        "--groups",
        "us-analysts",
        "--profile",
        "gpu-a100",
    )
    assert code == 3
    assert "DENIED" in out
    assert "[profile_not_entitled]" in out


def test_explain_attributes(capsys, tmp_path, example_policy_path):
    text = example_policy_path.read_text().replace(
        "    storageClass: ssd-eu\n",
        "    storageClass: ssd-eu\n    requireAttributes: {country: [DE]}\n",
    )
    (tmp_path / "p.yaml").write_text(text)
    args = [
        "policy",
        "explain",
        str(tmp_path / "p.yaml"),
        "--user",
        "ana",
        "--groups",
        "eu-researchers",
        "--profile",
        "cpu-small",
    ]
    assert run(capsys, *args, "--attr", "country=DE")[0] == 0
    code, out = run(capsys, *args, "--attr", "country=US")
    assert code == 3
    assert "entitled to nothing" in out


def test_explain_invalid_policy_exits_1(capsys):
    code, out = run(capsys, "policy", "explain", str(CORPUS / "01-image-tag.yaml"), "--user", "x")
    assert code == 1
    assert "is not pinned by digest" in out


def test_bad_attr_is_a_usage_error(example_policy_path):
    with pytest.raises(SystemExit, match="--attr takes NAME=VALUE"):
        main(["policy", "explain", str(example_policy_path), "--user", "x", "--attr", "nope"])


def test_console_script_is_installed(example_policy_path):
    sovhub = Path(sys.executable).with_name("sovhub")
    result = subprocess.run(
        [str(sovhub), "policy", "check", str(example_policy_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_explain_shows_sharing_rights(capsys, example_policy_path):
    code, out = run(
        capsys, "policy", "explain", str(example_policy_path), "--user", "ana",
        "--groups", "eu-researchers", "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["sharing"] == {
        "mayShare": True,
        "viaGroups": ["eu-researchers"],
        "maxMinutes": 480,
        "withGroupsByRegion": {"eu": ["eu-researchers"]},
        "withUsers": [],
        "receiveFrom": ["eu-researchers"],
        "receiveRegions": ["eu"],
    }
    code, out = run(
        capsys, "policy", "explain", str(example_policy_path), "--user", "bob",
        "--groups", "us-analysts",
    )  # fmt: skip
    assert "sharing: may not share servers" in out
    assert "may receive shares from members of eu-researchers, of servers in us" in out
