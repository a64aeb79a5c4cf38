"""Audit sinks: where shippers deliver records.

Each sink is a subclass of :class:`~.base.Sink` in a module of its own,
registered in :data:`SINKS` by the ``type`` name used in configuration.
"""

from __future__ import annotations

from typing import Any

from .base import Sink, SinkConfigError
from .jsonl import JsonLinesSink
from .loki import LokiSink
from .opensearch import OpenSearchSink
from .postgresql import PostgreSQLSink
from .sqlite import SQLiteSink
from .syslog import SyslogSink
from .webhook import WebhookSink

SINKS: dict[str, type[Sink]] = {
    "sqlite": SQLiteSink,
    "postgresql": PostgreSQLSink,
    "jsonl": JsonLinesSink,
    "syslog": SyslogSink,
    "loki": LokiSink,
    "opensearch": OpenSearchSink,
    "webhook": WebhookSink,
}


def make_sink(spec: dict[str, Any]) -> Sink:
    """Build a sink from ``{"type": "...", "name": "...", ...options}``."""
    kind = spec.get("type")
    if kind not in SINKS:
        raise SinkConfigError(
            f"unknown audit sink type {kind!r}; known: {', '.join(sorted(SINKS))}"
        )
    options = {k: v for k, v in spec.items() if k != "type"}
    return SINKS[kind].from_options(options)


__all__ = [
    "SINKS",
    "JsonLinesSink",
    "LokiSink",
    "OpenSearchSink",
    "PostgreSQLSink",
    "SQLiteSink",
    "Sink",
    "SinkConfigError",
    "SyslogSink",
    "WebhookSink",
    "make_sink",
]
