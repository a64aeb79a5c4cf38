"""The ``sovhub`` entry point: one group imported per run, and a plain install that works."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from sovereign_hub import cli
from tests.conftest import ROOT, require_tool

BASE_WHEELS = ROOT / ".tools" / "wheels" / "sovhub-base"


def _loaded_after(*argv: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``sovhub ARGV``."""
    code = (
        "import sys, json, contextlib, io\n"
        "from sovereign_hub.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    main({list(argv)!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_policy_check_imports_neither_the_audit_nor_the_images_group(example_policy_path):
    loaded = _loaded_after("policy", "check", str(example_policy_path))
    assert "sovereign_hub.policy.cli" in loaded
    heavy = {"prometheus_client", "jupyter_events", "jupyterhub", "kubespawner", "tornado"}
    assert not loaded & heavy, loaded & heavy
    # The policy reads image references with sovereign_hub.images.reference; the images
    # group itself (its CLI and registry client) stays unloaded.
    groups = {m for m in loaded if m.startswith("sovereign_hub.audit")}
    groups |= {"sovereign_hub.images.cli", "sovereign_hub.images.registry"} & loaded
    assert not groups


def test_the_group_table_matches_each_groups_own_help():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    registered = {choice.dest: choice.help for choice in action._choices_actions}
    assert registered == {name: command.help for name, command in cli.COMMANDS.items()}


def test_help_lists_every_group_and_version_prints(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name, command in cli.COMMANDS.items():
        assert name in out
        assert command.help in out
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.startswith("sovhub ")


def test_an_unknown_group_is_named_with_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["polcy", "check"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'polcy'" in err
    assert "'policy', 'audit', 'images'" in err


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory) -> Path:
    """``pip install sovereign-hub`` with no extras into a fresh venv, with no index.

    The project's wheel is built from this tree; its dependencies come from the
    wheelhouse `make base-wheels` fills (CI's `make test` does), so nothing is
    fetched here.
    """
    wheelhouse = require_tool(BASE_WHEELS, "base-wheels")
    root = tmp_path_factory.mktemp("plain-install")
    offline = ["--quiet", "--no-index", "--find-links", str(wheelhouse)]
    # No pip configuration of this machine (extra indexes, constraints) may take part.
    env = {"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": "/dev/null", "HOME": str(root)}
    # From the files git tracks, as the image's wheel is built (sovhub images): a checkout's
    # stale build/lib (setuptools reuses it) would otherwise leak old packages in.
    source = root / "source"
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    # The build backend (setuptools) comes from the wheelhouse too.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            *offline,
            "--no-deps",
            "--wheel-dir",
            str(root / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        env=env,
    )
    venv.create(root / "venv", with_pip=True)
    subprocess.run(
        [
            str(root / "venv" / "bin" / "python"),
            "-m",
            "pip",
            "install",
            *offline,
            "--find-links",
            str(root / "dist"),
            "sovereign-hub",
        ],
        check=True,
        capture_output=True,
        timeout=300,
        env=env,
    )
    return root / "venv" / "bin"


def test_the_wheel_carries_no_emulator(plain_install):
    """The emulated Kubernetes, the sandbox and its load generator are test equipment, a
    distribution of their own (sandbox/pyproject.toml): not in this wheel, built from the tree as the hub image's
    is (`sovhub images`), nor so in the image."""
    (wheel,) = (plain_install.parent.parent / "dist").glob("sovereign_hub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sovereign_hub/spawner/spawner.py" in names, names
    assert [n for n in names if n.startswith("sovereign_hub/sandbox/")] == []
    # The load generator drives the sandbox: it ships with it, not with the hub.
    assert [n for n in names if n.startswith("sovereign_hub/loadtest/")] == []
    probe = "import importlib.util as u; print(u.find_spec('sovereign_hub.sandbox'))"
    out = subprocess.run(
        [str(plain_install / "python"), "-c", probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "None"


def test_plain_install_has_no_extras(plain_install):
    probe = "import importlib.util as u; print([m for m in ('prometheus_client', 'jupyter_events', 'jupyterhub', 'kubespawner') if u.find_spec(m)])"
    out = subprocess.run(
        [str(plain_install / "python"), "-c", probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_plain_install_checks_a_policy(plain_install, example_policy_path):
    result = subprocess.run(
        [str(plain_install / "sovhub"), "policy", "check", str(example_policy_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "valid: 2 regions, 2 GPU types, 2 channels (3 versions), 3 profiles" in result.stdout


def test_plain_install_explains_a_request(plain_install, example_policy_path):
    result = subprocess.run(
        [
            str(plain_install / "sovhub"),
            "policy",
            "explain",
            str(example_policy_path),
            "--user",
            "ana",
            "--groups",
            "eu-researchers",
            "--attr",
            "country=DE",
            "--profile",
            "cpu-small",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["decision"]["allowed"] is True
    assert data["decision"]["plan"]["region"] == "eu"
    assert "@sha256:" in data["decision"]["plan"]["image"]["image"]


def test_plain_install_says_the_audit_group_needs_the_hub_extra(plain_install, tmp_path):
    result = subprocess.run(
        [str(plain_install / "sovhub"), "audit", "verify", str(tmp_path / "none.sqlite")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "sovhub audit: needs the 'hub' extra" in result.stderr
    assert "pip install 'sovereign-hub[hub]'" in result.stderr
    assert "Traceback" not in result.stderr
