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
