"""Generate ``policy.schema.json`` from the typed model.

Regenerate with ``python -m sovereign_hub.policy.schema``; a test keeps the file current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .model import Policy

SCHEMA_ID = "https://sovereign-hub.io/schemas/policy/v1.json"


def generate() -> dict[str, Any]:
    schema = Policy.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def render() -> str:
    return json.dumps(generate(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":  # pragma: no cover
    Path(__file__).with_name("policy.schema.json").write_text(render())
