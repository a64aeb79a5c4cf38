"""Audit event schemas: registered with jupyter_events, validated fast on every emit.

Schemas live in ``event_schemas/<family>/v<N>.yaml`` and are discovered by
glob. jupyter_events registers them, which also checks each against Jupyter's
event metaschema. Emits are validated by the same schemas compiled with
fastjsonschema: about 2 µs per event against jsonschema's 60, which keeps
auditing out of the hub's event loop budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema
import yaml
from jupyter_events.schema import EventSchema
from jupyter_events.schema_registry import SchemaRegistry

SCHEMA_DIR = Path(__file__).with_name("event_schemas")
BASE = "https://sovereign-hub.io/events"


VERSION_FILE = re.compile(r"v([1-9][0-9]*)\.yaml")
"""The only name a schema file may have: ``v<N>.yaml``, N a whole number from 1."""


class SchemaFileError(RuntimeError):
    """A file in the schema directory that is not a schema version (a packaging mistake)."""


def schema_files(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Every schema file, ``<family>/v<N>.yaml``: the one list of events.

    Any other YAML file in a family's directory (``v2-draft.yaml``, ``v02.yaml``,
    ``v3.yml``) is refused, naming it, rather than skipped: the schemas ship inside
    the package, so a stray file means the package is not the one that was tested,
    and skipping it would silently leave out a version someone meant to add (a
    reader of a trail that uses it would then call its records unknown). The error
    comes at import, so the first test run, or the hub's start, says what to move.
    """
    found = []
    for path in sorted(directory.glob("*/*.y*ml")):
        if not VERSION_FILE.fullmatch(path.name):
            raise SchemaFileError(
                f"{path}: not an audit schema file name; a schema version is "
                "<family>/v<N>.yaml with N = 1, 2, … (keep drafts outside event_schemas/)"
            )
        found.append(path)
    return found


def version_of(path: Path) -> int:
    """The version a schema file's name gives (``v2.yaml`` → 2)."""
    match = VERSION_FILE.fullmatch(path.name)
    if match is None:
        raise SchemaFileError(f"{path}: not an audit schema file name")
    return int(match.group(1))


def schema_id(path: Path) -> str:
    """The ``$id`` a schema file declares, from its place (a test holds each file to it)."""
    return f"{BASE}/{path.parent.name}/{path.stem}"


def latest_ids(directory: Path = SCHEMA_DIR) -> dict[str, str]:
    """Event family → the ``$id`` of its newest version."""
    newest: dict[str, tuple[int, str]] = {}
    for path in schema_files(directory):
        version = version_of(path)
        if version > newest.get(path.parent.name, (0, ""))[0]:
            newest[path.parent.name] = (version, schema_id(path))
    return {name: found for name, (_, found) in sorted(newest.items())}


LATEST = latest_ids()
"""Family → newest ``$id``, read from the schema files, so a new file (a new event or
``v<N+1>`` of one) is validated, filterable and documented without a list to edit.
What the hub *emits* is pinned in :data:`EMITTED` instead."""
PROOFS = ("checkpoint", "retention")
"""The trail's proofs about itself: for ``sovhub audit verify``, not for reading."""


def readable_events(directory: Path = SCHEMA_DIR) -> tuple[str, ...]:
    """The families a person reads and filters by: every schema's but the :data:`PROOFS`,
    so a new kind of event is filterable the day its schema lands."""
    return tuple(f for f in latest_ids(directory) if f not in PROOFS)


EMITTED: dict[str, str] = {}
"""Family → the ``$id`` the hub emits, each pinned by :func:`emitted` below."""


def emitted(family: str, version: int) -> str:
    """The ``$id`` the hub emits for ``family``: pinned, not the newest file, so a new
    ``v<N+1>.yaml`` (perhaps with a new required field) changes nothing emitted until
    its payload is updated; :func:`stale_emits` (run by a test) names every family
    whose newest file is ahead of its pin."""
    path = SCHEMA_DIR / family / f"v{version}.yaml"
    if not path.is_file():
        raise SchemaFileError(f"the hub emits {family} v{version}, but {path} does not exist")
    EMITTED[family] = schema_id(path)
    return EMITTED[family]


def stale_emits(directory: Path = SCHEMA_DIR) -> list[str]:
    """Each family whose newest schema in ``directory`` is not what the hub emits, in words."""
    problems = []
    for name, newest in latest_ids(directory).items():
        pinned = EMITTED.get(name)
        if pinned is None:
            problems.append(f"{name}: {newest} has no emitted() constant in audit/schemas.py")
        elif pinned != newest:
            problems.append(
                f"{name}: the newest schema is {newest.rsplit('/', 1)[1]} but the hub emits "
                f"{pinned.rsplit('/', 1)[1]}; update the payload where it is built, then its "
                "emitted() version in audit/schemas.py"
            )
    return problems


# What each emit site sends, one constant per family with its version written out; the
# comment names where the payload is built, which must change with the version.
LOGIN = emitted("login", 1)  # reporter.event_data
LOGIN_DENIED = emitted("login-denied", 1)  # reporter.event_data
LOGOUT = emitted("logout", 1)  # reporter.event_data
SPAWN_REQUESTED = emitted("spawn-requested", 2)  # reporter.event_data
SPAWN_DENIED = emitted("spawn-denied", 1)  # reporter.event_data
SERVER_STARTED = emitted("server-started", 2)  # reporter.event_data
SPAWN_FAILED = emitted("spawn-failed", 2)  # reporter.event_data
SERVER_STOPPED = emitted("server-stopped", 2)  # reporter.event_data
IMAGE_PIN_CHANGED = emitted("image-pin-changed", 1)  # reporter.event_data
POLICY_LOADED = emitted("policy-loaded", 1)  # reporter.AuditReporter.policy_seen
API_ACTION = emitted("api-action", 1)  # hubhooks
HUB_SERVER_ACTION = emitted("hub-server-action", 1)  # hubhooks
AUDIT_VIEWED = emitted("audit-viewed", 2)  # viewer/app.py
CHECKPOINT = emitted("checkpoint", 1)  # trail.AuditTrail.checkpoint
EPOCH_STARTED = emitted("epoch-started", 1)  # epoch.previous_end
RETENTION = emitted("retention", 1)  # retention.retain
GPU_QUEUED = emitted("gpu-queued", 1)  # reporter._queue_data
GPU_ADMITTED = emitted("gpu-admitted", 1)  # reporter._queue_data
GPU_ABANDONED = emitted("gpu-abandoned", 1)  # reporter._queue_data
DATASET_MOUNTED = emitted("dataset-mounted", 1)  # reporter.event_data
SHARE_GRANTED = emitted("share-granted", 1)  # reporter.share_data
SHARE_REFUSED = emitted("share-refused", 1)  # reporter.share_data
SHARE_REVOKED = emitted("share-revoked", 1)  # reporter.share_data
SHARE_ACCESSED = emitted("share-accessed", 1)  # reporter.share_data


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
