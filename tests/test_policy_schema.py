"""The shipped JSON Schema is current, and agrees with the loader on documents."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from sovereign_hub.policy import schema

CORPUS = Path(__file__).parent / "policy_corpus"


def shipped() -> dict:
    return json.loads(
        resources.files("sovereign_hub.policy").joinpath("policy.schema.json").read_text()
    )


def test_shipped_schema_matches_the_model():
    assert shipped() == json.loads(schema.render()), (
        "policy.schema.json is stale: run python -m sovereign_hub.policy.schema"
    )


def test_schema_is_valid_and_accepts_the_example(example_policy_path):
    spec = shipped()
    jsonschema.Draft202012Validator.check_schema(spec)
    data = yaml.safe_load(example_policy_path.read_text())
    # JSON has no dates: editors see them as strings.
    for channel in data["channels"].values():
        for version in channel["versions"]:
            version["released"] = str(version["released"])
    jsonschema.Draft202012Validator(spec).validate(data)


@pytest.mark.parametrize(
    "name", ["01-image-tag", "24-unknown-top-level-key", "20-gpu-count-text", "15-memory-gb-typo"]
)
def test_schema_rejects_what_the_loader_rejects(name):
    data = yaml.safe_load((CORPUS / f"{name}.yaml").read_text())
    for channel in data.get("channels", {}).values():
        for version in channel["versions"]:
            version["released"] = str(version["released"])
    assert list(jsonschema.Draft202012Validator(shipped()).iter_errors(data))


def test_every_field_is_described():
    missing = []
    for name, definition in shipped()["$defs"].items():
        for field, spec in definition.get("properties", {}).items():
            if not spec.get("description"):
                missing.append(f"{name}.{field}")
    assert missing == []


def test_schema_rejects_badly_named_sections():
    data = {"regions": {"EU": {}}, "channels": {}, "profiles": {}}
    errors = list(jsonschema.Draft202012Validator(shipped()).iter_errors(data))
    assert any("EU" in e.message for e in errors)


def test_reference_markdown_covers_every_model():
    text = schema.reference_markdown()
    for name in shipped()["$defs"]:
        assert f"## {name}" in text
    assert "| `regions` | mapping of name to [Region](#policy-region) | required |" in text
