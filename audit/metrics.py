"""The trail's Prometheus metrics, served by JupyterHub's own ``/hub/metrics``.

JupyterHub serves ``prometheus_client``'s default registry, so a collector
registered there appears beside the hub's metrics. Values are read from the
trail when Prometheus scrapes, so emitting pays nothing for them.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .trail import AuditTrail

_trails: weakref.WeakSet[AuditTrail] = weakref.WeakSet()


def _age(time_text: str) -> float:
    moment = datetime.fromisoformat(time_text.replace("Z", "+00:00"))
    return max(0.0, time.time() - moment.timestamp())


class TrailCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        emitted = CounterMetricFamily(
            "sovereign_audit_events_emitted", "Audit events written to the spool.", labels=["hub"]
        )
        dropped = CounterMetricFamily(
            "sovereign_audit_events_dropped",
            "Audit events dropped because the spool was full (fail-open only).",
            labels=["hub"],
        )
        delivered = CounterMetricFamily(
            "sovereign_audit_events_delivered",
            "Audit events a sink acknowledged.",
            labels=["hub", "sink"],
        )
        failures = CounterMetricFamily(
            "sovereign_audit_delivery_failures",
            "Failed delivery attempts (each is retried).",
            labels=["hub", "sink"],
        )
        depth = GaugeMetricFamily(
            "sovereign_audit_spool_bytes",
            "Bytes in the spool not yet delivered to every sink.",
            labels=["hub"],
        )
        lag = GaugeMetricFamily(
            "sovereign_audit_undelivered_events", "Events a sink has yet to deliver.",
            labels=["hub", "sink"],
        )  # fmt: skip
        oldest = GaugeMetricFamily(
            "sovereign_audit_oldest_undelivered_seconds",
            "Age of the oldest event a sink has yet to deliver (0 when it is up to date).",
            labels=["hub", "sink"],
        )
        for trail in list(_trails):
            hub = trail.hub
            emitted.add_metric([hub], trail.emitted)
            dropped.add_metric([hub], trail.dropped_total)
            depth.add_metric([hub], trail.spool.pending_bytes())
            for shipper in trail.shippers:
                sink = shipper.sink.name
                delivered.add_metric([hub, sink], shipper.delivered)
                failures.add_metric([hub, sink], shipper.failures)
                lag.add_metric([hub, sink], max(0, trail.seq - shipper.acked))
                first = trail.spool.read_after(shipper.acked, 1)
                oldest.add_metric([hub, sink], _age(first[0]["time"]) if first else 0.0)
        yield from (emitted, dropped, delivered, failures, depth, lag, oldest)


_collector = TrailCollector()
REGISTRY.register(_collector)


def watch(trail: AuditTrail) -> None:
    """Expose ``trail``'s figures while it lives."""
    _trails.add(trail)
