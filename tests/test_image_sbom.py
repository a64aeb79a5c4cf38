"""The SBOMs the image build writes are valid CycloneDX 1.5, checked against the
specification's own JSON schema (as shipped by cyclonedx-python-lib, the reference
implementation), not only against the fields this project chose to assert."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from sovereign_hub.images.sbom import (
    debian_components,
    make_sbom,
    npm_components,
    python_components,
)

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = JsonStrictValidator(SchemaVersion.V1_5)


def cyclonedx_errors(document: dict) -> str | None:
    """None when ``document`` is valid CycloneDX 1.5 JSON, else the validator's message."""
    error = VALIDATOR.validate_str(json.dumps(document))
    return None if error is None else str(error)


@pytest.fixture
def document(tmp_path: Path) -> dict:
    wheel = tmp_path / "Jupyter_Events-0.12.0-py3-none-any.whl"
    wheel.write_bytes(b"a wheel")
    lock = json.loads((ROOT / "package-lock.json").read_text())
    components = (
        debian_components({"libc6": ("2.36-9+deb12u9", "amd64"), "bash": ("5.2.15-2", "amd64")},
                          {"libc6": "b" * 64})
        + python_components([wheel])
        + npm_components(lock)
    )  # fmt: skip
    return make_sbom(image="proxy", version="0.1.0", digest="sha256:" + "a" * 64, epoch=0,
                     components=components, tool_version="0.1.0")  # fmt: skip


def test_an_sbom_of_debian_python_and_npm_packages_is_valid_cyclonedx(document):
    assert {c["purl"].split("/")[0] for c in document["components"]} == {
        "pkg:deb", "pkg:pypi", "pkg:npm"
    }  # fmt: skip
    assert cyclonedx_errors(document) is None


def test_the_schema_check_catches_what_a_field_list_would_not(document):
    """A lower-case hash algorithm or a missing component type passes a check of keys; the
    specification refuses both."""
    document["components"][0]["hashes"] = [{"alg": "sha256", "content": "b" * 64}]
    assert "sha256" in (cyclonedx_errors(document) or "")
    del document["components"][0]["hashes"]
    document["components"][1]["type"] = "package"
    assert "package" in (cyclonedx_errors(document) or "")
