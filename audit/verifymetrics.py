"""`sovhub audit verify --metrics-file`: the verdict as Prometheus metrics, for alerting.

Verification runs outside the hub (a CronJob, an auditor's scheduler), so the
hub's /hub/metrics cannot say whether the chain is intact. The verdict is
written in Prometheus' text format for node_exporter's textfile collector (or
any scraper of a file), with prometheus_client's ``write_to_textfile``, which
writes a temporary file and renames it, so a scrape never reads half a file.
The chart's PrometheusRule alerts on these (SovereignAuditChainBroken,
SovereignAuditVerifyStale).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from .verify import Report


def store_label(store: str) -> str:
    """The store as a label value, without a password a URL may carry."""
    if "://" not in store:
        return store
    parts = urlsplit(store)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, "", ""))


def write_metrics(
    path: str,
    store: str,
    report: Report,
    *,
    now: float | None = None,
    unsigned_prefix: bool = False,
) -> None:
    """The verdict as gauges; ``unsigned_prefix``: ``--allow-unsigned-prefix`` was given, so
    an accepted prefix counts as proven (its size is its own gauge)."""
    registry = CollectorRegistry()
    labels = ["store"]

    def gauge(name: str, help_: str, value: float) -> None:
        Gauge(name, help_, labels, registry=registry).labels(store).set(value)

    gauge("sovereign_audit_verify_ok", "1 when the last verification found the chain intact.",
          1 if report.ok else 0)  # fmt: skip
    gauge("sovereign_audit_verify_proven",
          "1 when the last verification proved the trail complete (its tail sealed); with "
          "--allow-unsigned-prefix, records before the first signed checkpoint count when "
          "accepted as a prefix (sovereign_audit_verify_unsigned_records says how many).",
          1 if report.proven_allowing(unsigned_prefix) else 0)  # fmt: skip
    gauge("sovereign_audit_verify_unsigned_records",
          "Records the last verification found in unsigned segments (no signature covers "
          "them; an accepted prefix included).", report.unsigned_records)  # fmt: skip
    gauge("sovereign_audit_verify_findings", "Problems the last verification found.",
          len(report.findings))  # fmt: skip
    gauge("sovereign_audit_verify_records", "Records the last verification checked.",
          report.records)  # fmt: skip
    gauge("sovereign_audit_verify_last_run_timestamp_seconds",
          "When the last verification finished (Unix time).", now or time.time())  # fmt: skip
    write_to_textfile(path, registry)
