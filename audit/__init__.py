"""The audit trail: event schemas, durable spool, sinks and verification.

In ``jupyterhub_config.py``::

    c.AuditTrail.spool_dir = "/srv/jupyterhub/audit-spool"
    c.AuditTrail.sinks = [{"type": "sqlite", "path": "/srv/jupyterhub/audit.sqlite"}]
    from sovereign_hub.audit import hub_reporter
    c.SovereignSpawner.reporter = hub_reporter(c)
"""

from __future__ import annotations

import atexit
from typing import Any

from . import metrics
from .hubhooks import install
from .reporter import AuditReporter
from .trail import AuditTrail


def hub_reporter(config: Any) -> AuditReporter:
    """Start this hub's audit trail from ``c.AuditTrail.*`` and return the spawner's reporter.

    Also records the hub's state-changing REST API requests and its own
    ``server-action`` events, and exposes the trail's metrics on ``/hub/metrics``.
    When the hub exits (a clean shutdown, e.g. on SIGTERM), the trail is sealed with its
    final checkpoint, so a verifier can prove the stopped hub's trail complete.
    """
    trail = AuditTrail(config=config).start()
    # At interpreter exit, before daemon threads stop: the shippers still run to deliver it.
    atexit.register(trail.stop)
    install(config, trail)
    metrics.watch(trail)
    return AuditReporter(trail)


__all__ = ["AuditReporter", "AuditTrail", "hub_reporter"]
