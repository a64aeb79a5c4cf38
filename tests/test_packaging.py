"""The distribution maps the design card's folders into ``sovereign_hub``."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("folder", ["policy", "spawner", "authenticator", "audit", "sandbox"])
def test_top_level_folder_is_importable_as_subpackage(folder):
    module = importlib.import_module(f"sovereign_hub.{folder}")
    assert module.__file__ is not None
    assert module.__file__.startswith(str(ROOT / folder))


def test_sovhub_console_script():
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts["sovhub"] == "sovereign_hub.cli:main"


def test_outside_the_checkout_the_package_and_the_sandbox_import_from_it(tmp_path):
    """The sandbox is a distribution of its own, linked by `make install` (.ci/link-sandbox):
    in a process started elsewhere (a hub, a kubelet's pod), `sovereign_hub` is still this
    checkout's package, not an empty namespace, and `sovereign_hub.sandbox` its sandbox/."""
    probe = (
        "import sovereign_hub, sovereign_hub.sandbox.kube.cluster as c\n"
        "print(sovereign_hub.__file__); print(c.__file__); print(sovereign_hub.__version__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    package, cluster, _ = done.stdout.splitlines()
    assert package == str(ROOT / "sovereign_hub" / "__init__.py")
    assert cluster == str(ROOT / "sandbox" / "kube" / "cluster.py")
