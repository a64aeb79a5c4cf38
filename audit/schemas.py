"""Audit event schemas: registered with jupyter_events, validated fast on every emit.

Schemas live in ``event_schemas/<family>/v<N>.yaml`` and are discovered by
glob. jupyter_events registers them, which also checks each against Jupyter's
event metaschema. Emits are validated by the same schemas compiled with
fastjsonschema: about 2 µs per event against jsonschema's 60, which keeps
auditing out of the hub's event loop budget.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema
import yaml
from jupyter_events.schema import EventSchema
from jupyter_events.schema_registry import SchemaRegistry

SCHEMA_DIR = Path(__file__).with_name("event_schemas")
BASE = "https://sovereign-hub.io/events"

# One constant per schema id, so emit sites never spell an $id.
LOGIN = f"{BASE}/login/v1"
LOGIN_DENIED = f"{BASE}/login-denied/v1"
LOGOUT = f"{BASE}/logout/v1"
SPAWN_REQUESTED = f"{BASE}/spawn-requested/v2"  # v2 adds the region's cluster
SPAWN_DENIED = f"{BASE}/spawn-denied/v1"
SERVER_STARTED = f"{BASE}/server-started/v2"  # v2 adds the region's cluster
SPAWN_FAILED = f"{BASE}/spawn-failed/v2"  # v2 adds the region's cluster
SERVER_STOPPED = f"{BASE}/server-stopped/v2"  # v2 adds the region's cluster
IMAGE_PIN_CHANGED = f"{BASE}/image-pin-changed/v1"
POLICY_LOADED = f"{BASE}/policy-loaded/v1"
API_ACTION = f"{BASE}/api-action/v1"
HUB_SERVER_ACTION = f"{BASE}/hub-server-action/v1"
AUDIT_VIEWED = f"{BASE}/audit-viewed/v2"
CHECKPOINT = f"{BASE}/checkpoint/v1"
EPOCH_STARTED = f"{BASE}/epoch-started/v1"
RETENTION = f"{BASE}/retention/v1"
GPU_QUEUED = f"{BASE}/gpu-queued/v1"
GPU_ADMITTED = f"{BASE}/gpu-admitted/v1"
GPU_ABANDONED = f"{BASE}/gpu-abandoned/v1"
DATASET_MOUNTED = f"{BASE}/dataset-mounted/v1"
SHARE_GRANTED = f"{BASE}/share-granted/v1"
SHARE_REFUSED = f"{BASE}/share-refused/v1"
SHARE_REVOKED = f"{BASE}/share-revoked/v1"
SHARE_ACCESSED = f"{BASE}/share-accessed/v1"


class InvalidEvent(ValueError):
    """An event that does not match its schema (a bug at the emit site)."""


def schema_files() -> list[Path]:
    return sorted(SCHEMA_DIR.glob("*/v*.yaml"))


class Validators:
    """Every schema file, registered with jupyter_events and compiled for emits."""

    def __init__(self) -> None:
        self.registry = SchemaRegistry()
        self._compiled: dict[str, Callable[[Any], Any]] = {}
        self.versions: dict[str, str] = {}
        for path in schema_files():
            # Checked against Jupyter's metaschema; EventSchema reads a Path, register's
            # annotation names only its other inputs.
            schema = self.registry.register(EventSchema(path))
            raw = yaml.safe_load(path.read_text())
            self._compiled[schema.id] = fastjsonschema.compile(raw)
            self.versions[schema.id] = str(schema.version)

    def __contains__(self, schema_id: str) -> bool:
        return schema_id in self._compiled

    def validate(self, schema_id: str, data: dict[str, Any]) -> None:
        check = self._compiled.get(schema_id)
        if check is None:
            raise InvalidEvent(f"no audit schema {schema_id!r} is registered")
        try:
            check(data)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise InvalidEvent(f"{schema_id}: {exc.message}") from None


def family(schema_id: str) -> str:
    """``https://…/events/server-started/v1`` → ``server-started``."""
    return schema_id.rstrip("/").split("/")[-2]
