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


def schema_files(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Every schema file, ``<family>/v<N>.yaml``: the one list of events."""
    return sorted(directory.glob("*/v*.yaml"))


def schema_id(path: Path) -> str:
    """The ``$id`` a schema file declares, from its place (a test holds each file to it)."""
    return f"{BASE}/{path.parent.name}/{path.stem}"


def latest_ids(directory: Path = SCHEMA_DIR) -> dict[str, str]:
    """Event family → the ``$id`` of its newest version, which the hub emits."""
    newest: dict[str, tuple[int, str]] = {}
    for path in schema_files(directory):
        version = int(path.stem.removeprefix("v"))
        if version > newest.get(path.parent.name, (0, ""))[0]:
            newest[path.parent.name] = (version, schema_id(path))
    return {name: found for name, (_, found) in sorted(newest.items())}


LATEST = latest_ids()
"""Family → newest ``$id``, read from the schema files, so a new file (a new event or
``v<N+1>`` of one) is emitted, validated, filterable and documented without a list to edit."""
PROOFS = ("checkpoint", "retention")
"""The trail's proofs about itself: for ``sovhub audit verify``, not for reading."""


def readable_events(directory: Path = SCHEMA_DIR) -> tuple[str, ...]:
    """The families a person reads and filters by: every schema's but the :data:`PROOFS`,
    so a new kind of event is filterable the day its schema lands."""
    return tuple(f for f in latest_ids(directory) if f not in PROOFS)


# One constant per schema id, so emit sites never spell an $id; each names its family
# once and takes the newest version from the files.
LOGIN = LATEST["login"]
LOGIN_DENIED = LATEST["login-denied"]
LOGOUT = LATEST["logout"]
SPAWN_REQUESTED = LATEST["spawn-requested"]
SPAWN_DENIED = LATEST["spawn-denied"]
SERVER_STARTED = LATEST["server-started"]
SPAWN_FAILED = LATEST["spawn-failed"]
SERVER_STOPPED = LATEST["server-stopped"]
IMAGE_PIN_CHANGED = LATEST["image-pin-changed"]
POLICY_LOADED = LATEST["policy-loaded"]
API_ACTION = LATEST["api-action"]
HUB_SERVER_ACTION = LATEST["hub-server-action"]
AUDIT_VIEWED = LATEST["audit-viewed"]
CHECKPOINT = LATEST["checkpoint"]
EPOCH_STARTED = LATEST["epoch-started"]
RETENTION = LATEST["retention"]
GPU_QUEUED = LATEST["gpu-queued"]
GPU_ADMITTED = LATEST["gpu-admitted"]
GPU_ABANDONED = LATEST["gpu-abandoned"]
DATASET_MOUNTED = LATEST["dataset-mounted"]
SHARE_GRANTED = LATEST["share-granted"]
SHARE_REFUSED = LATEST["share-refused"]
SHARE_REVOKED = LATEST["share-revoked"]
SHARE_ACCESSED = LATEST["share-accessed"]


class InvalidEvent(ValueError):
    """An event that does not match its schema (a bug at the emit site)."""


class Validators:
    """Every schema file, registered with jupyter_events and compiled for emits."""

    def __init__(self, directory: Path = SCHEMA_DIR) -> None:
        self.registry = SchemaRegistry()
        self._compiled: dict[str, Callable[[Any], Any]] = {}
        self.versions: dict[str, str] = {}
        for path in schema_files(directory):
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
