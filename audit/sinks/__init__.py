"""Audit sinks: where shippers deliver records.

Each sink is a subclass of :class:`~.base.Sink` in a module of its own,
registered in :data:`SINKS` by the ``type`` name used in configuration. A
sink of another package is named by its import path instead
(``mycompany.audit:SplunkSink``) and goes through the same contract: its
constructor's typed options are checked the same way.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Sink, SinkConfigError
from .jsonl import JsonLinesSink
from .loki import LokiSink
from .opensearch import OpenSearchSink
from .options import options_of
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


def sink_class(kind: Any) -> type[Sink]:
    """The class for a sink ``type``: a built-in name, or ``package.module:Class`` (also
    ``package.module.Class``) of a subclass of :class:`Sink` that implements ``deliver``."""
    if kind in SINKS:
        return SINKS[kind]
    if not isinstance(kind, str) or not (":" in kind or "." in kind):
        raise SinkConfigError(
            f"unknown audit sink type {kind!r}; known: {', '.join(sorted(SINKS))}, "
            "or a class of your own as package.module:Class"
        )
    module_name, colon, attribute = kind.partition(":")
    if not colon:
        module_name, _, attribute = kind.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # whatever the module raises while importing, the admin must see
        raise SinkConfigError(
            f"audit sink type {kind!r}: cannot import {module_name} ({type(exc).__name__}: {exc})"
        ) from None
    found = getattr(module, attribute, None)
    if found is None:
        raise SinkConfigError(f"audit sink type {kind!r}: {module_name} has no {attribute!r}")
    if not (isinstance(found, type) and issubclass(found, Sink)):
        raise SinkConfigError(
            f"audit sink type {kind!r}: {attribute} is not a subclass of "
            "sovereign_hub.audit.sinks.Sink (the sink contract)"
        )
    if found.deliver is Sink.deliver:
        raise SinkConfigError(
            f"audit sink type {kind!r}: {attribute} does not implement deliver(records)"
        )
    try:
        options_of(found)
    except (NameError, TypeError) as exc:
        raise SinkConfigError(
            f"audit sink type {kind!r}: {attribute}'s options cannot be read from its "
            f"constructor's annotations ({exc})"
        ) from None
    return found


def make_sink(spec: dict[str, Any]) -> Sink:
    """Build a sink from ``{"type": "...", "name": "...", ...options}``."""
    cls = sink_class(spec.get("type"))
    options = {k: v for k, v in spec.items() if k != "type"}
    return cls.from_options(options)


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
    "sink_class",
]
