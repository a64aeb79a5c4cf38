"""The docs' version switcher file: well formed, and naming the version being built."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from sovereign_hub import __version__

DOCS = Path(__file__).parent.parent / "docs"


def switcher_version(release: str) -> str:
    spec = importlib.util.spec_from_file_location("docs_conf", DOCS / "conf.py")
    assert spec
    assert spec.loader
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf.switcher_version(release)


def test_the_switcher_lists_this_version_once_with_a_url():
    entries = json.loads((DOCS / "_static" / "switcher.json").read_text())
    versions = [e["version"] for e in entries]
    assert len(versions) == len(set(versions))
    assert all(e["url"].endswith("/") for e in entries)
    assert sum(bool(e.get("preferred")) for e in entries) <= 1
    # A release whose docs are not in the switcher would show an empty selection.
    assert switcher_version(__version__) in versions


def test_one_docs_site_per_minor_release():
    assert switcher_version("0.1.0.dev0") == "dev"
    assert switcher_version("1.4.2") == "1.4"
