"""The distribution maps the design card's folders into ``sovereign_hub``."""

from __future__ import annotations

import importlib
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


def test_policy_code_does_not_import_kubernetes_or_the_hub():
    # The decision must stay a pure function: keep its imports honest.
    for path in (ROOT / "policy").glob("*.py"):
        text = path.read_text()
        for banned in ("kubernetes", "jupyterhub", "kubespawner", "tornado", "requests"):
            assert f"import {banned}" not in text, (path, banned)
            assert f"from {banned}" not in text, (path, banned)
