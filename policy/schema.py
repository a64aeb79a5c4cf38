"""Generate ``policy.schema.json`` from the typed model.

Regenerate with ``python -m sovereign_hub.policy.schema``; a test keeps the file current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .model import Policy

SCHEMA_ID = "https://sovereign-hub.io/schemas/policy/v1.json"


def _close_name_patterns(node: Any) -> None:
    # pydantic describes ``dict[Slug, X]`` with patternProperties only; without
    # additionalProperties an editor would accept a badly named region silently.
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _close_name_patterns(value)
    elif isinstance(node, list):
        for value in node:
            _close_name_patterns(value)


def generate() -> dict[str, Any]:
    schema = Policy.model_json_schema(by_alias=True, mode="validation")
    _close_name_patterns(schema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def render() -> str:
    return json.dumps(generate(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":  # pragma: no cover
    Path(__file__).with_name("policy.schema.json").write_text(render())


def _type_of(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#policy-{name.lower()})"
    if "anyOf" in spec:
        kinds = [_type_of(s) for s in spec["anyOf"] if s.get("type") != "null"]
        nullable = any(s.get("type") == "null" for s in spec["anyOf"])
        return " or ".join(kinds) + (" (optional)" if nullable else "")
    if "enum" in spec:
        return " \\| ".join(f"`{v}`" for v in spec["enum"])
    if "const" in spec:
        return f"`{spec['const']}`"
    kind = spec.get("type", "any")
    if kind == "array":
        return f"list of {_type_of(spec.get('items', {}))}"
    if kind == "object" and isinstance(spec.get("additionalProperties"), dict):
        return f"mapping of name to {_type_of(spec['additionalProperties'])}"
    if kind == "object" and spec.get("patternProperties"):
        (value,) = spec["patternProperties"].values()
        return f"mapping of name to {_type_of(value)}"
    if spec.get("format") == "date":
        return "date (YYYY-MM-DD)"
    return str(kind)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(title: str, anchor: str, definition: dict[str, Any]) -> list[str]:
    required = set(definition.get("required", []))
    lines = [
        f"({anchor})=",
        f"## {title}",
        "",
        _cell(definition.get("description", "")),
        "",
        "| key | type | required / default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for key, spec in definition.get("properties", {}).items():
        if key in required:
            need = "required"
        elif "default" in spec:
            need = f"default `{json.dumps(spec['default'])}`"
        else:
            need = "optional"
        lines.append(
            f"| `{key}` | {_type_of(spec)} | {need} | {_cell(spec.get('description', ''))} |"
        )
    return [*lines, ""]


def reference_markdown() -> str:
    """The policy field reference (MyST Markdown), generated so it cannot drift from the model."""
    spec = generate()
    out = _table("Policy (the document)", "policy-policy", spec)
    for name, definition in spec["$defs"].items():
        out += _table(name, f"policy-{name.lower()}", definition)
    return "\n".join(out)
