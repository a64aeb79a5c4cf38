"""The import rules between components, checked by import-linter.

The contracts are in pyproject.toml (``[tool.importlinter]``). import-linter builds its
graph with grimp, which finds a package's folder and walks its files; the editable install
maps ``sovereign_hub.policy`` and the other components to their top-level folders only at
import time (setuptools' finder), so grimp would see ``sovereign_hub/`` alone. The check
therefore runs on a copy laid out as the wheels install it, made from the same
``package-dir`` mappings the builds use: the hub's, and the sandbox's own distribution
(``sandbox/pyproject.toml``), so that an import of the emulator is seen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def package_dirs(project: Path) -> dict[str, Path]:
    """A distribution's ``package-dir`` mapping, each folder as a path."""
    settings = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {package: project / folder for package, folder in settings["package-dir"].items()}


def installed_layout(into: Path) -> Path:
    """``sovereign_hub`` as the installs lay it out, under ``into``; returns ``into``."""
    mapping = package_dirs(ROOT) | package_dirs(ROOT / "sandbox")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "pyproject.toml")
    # Shortest first: a mapped component is copied into its parent package's copy.
    for package, folder in sorted(mapping.items(), key=lambda kv: kv[0]):
        shutil.copytree(folder, into / package.replace(".", "/"), ignore=ignore)
    return into


def lint_imports(tree: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    only = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", *only, str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        timeout=240,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: `make install` installs the test extra")
    return installed_layout(tmp_path / "site")


def test_the_components_keep_their_import_contracts(tree: Path):
    done = lint_imports(tree)
    assert done.returncode == 0, done.stdout + done.stderr
    # Every component was seen (a layout grimp cannot read fails as "does not exist").
    assert "Contracts: 4 kept, 0 broken." in done.stdout, done.stdout


def test_a_spawner_module_importing_the_emulator_breaks_the_contract(tree: Path):
    # The check can fail: one function-level import of the sandbox from the spawner does it.
    (tree / "sovereign_hub" / "spawner" / "leak.py").write_text(
        "def cluster():\n    from sovereign_hub.sandbox.kube import cluster\n    return cluster\n"
    )
    done = lint_imports(tree, "no-emulator")
    assert done.returncode != 0
    assert "The hub side never imports the emulated Kubernetes (test equipment) BROKEN" in (
        done.stdout
    ), done.stdout
    assert "sovereign_hub.spawner.leak -> sovereign_hub.sandbox.kube" in done.stdout
