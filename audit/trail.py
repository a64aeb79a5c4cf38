"""The audit trail of one hub: validate, chain, spool, ship.

``emit`` does the hub's share synchronously and cheaply: it validates the
event against its schema, links it to its predecessor with an HMAC, and
appends it to the spool. Everything slow (stores, networks, retries) happens
in shipper threads, so emitting never waits on a store, and a store outage
only delays delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from traitlets import CaselessStrEnum, Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from sovereign_hub.reporting import AuditUnavailable

from .chain import GENESIS, canonical
from .schemas import Validators
from .shipper import Shipper
from .shipprocess import RemoteShipper, ShipperProcess
from .sinks import make_sink
from .spool import Spool


class AuditTrail(LoggingConfigurable):
    """Sovereign Hub's audit trail, configured once per hub.

    Example::

        c.AuditTrail.spool_dir = "/srv/jupyterhub/audit-spool"
        c.AuditTrail.hmac_key_file = "/etc/sovereign-hub/audit/hmac-key"
        c.AuditTrail.sinks = [
            {"type": "sqlite", "path": "/srv/jupyterhub/audit.sqlite"},
            {"type": "jsonl", "path": "-"},
        ]
    """

    spool_dir = Unicode(
        "audit-spool",
        config=True,
        help="""Directory of the durable spool. Put it on the hub's persistent volume: what is
        in it survives restarts and is delivered afterwards.""",
    )
    spool_limit_bytes = Integer(
        512 * 2**20,
        config=True,
        help="""Most bytes of undelivered records the spool holds (default 512 MiB). What
        happens beyond it is `on_spool_full`.""",
    )
    on_spool_full = CaselessStrEnum(
        ["fail-closed", "fail-open"],
        default_value="fail-closed",
        config=True,
        help="""When the spool is full: `fail-closed` refuses new logins and spawns with a clear
        message (like auditd's disk_full_action); `fail-open` lets them through, drops their
        events, logs a critical alert and records how many were dropped once space frees.""",
    )
    hmac_key_file = Unicode(
        "",
        config=True,
        help="""File holding the chain's HMAC key (a Kubernetes Secret). Empty: the
        SOVEREIGN_AUDIT_HMAC_KEY environment variable.""",
    )
    hub_instance = Unicode(
        "",
        config=True,
        help="""Name of this hub in events (default: the host name). Each hub instance has
        its own chain.""",
    )
    sinks = List(
        config=True,
        help="""Where records are delivered, each a dict with `type` (`sqlite`, `jsonl`) and
        its options, e.g. `{"type": "sqlite", "path": "/srv/audit.sqlite"}`. Several at once;
        each has its own shipper and cursor.""",
    )
    batch_size = Integer(500, config=True, help="Most records a shipper delivers in one batch.")
    shipper_idle = Float(
        0.05, config=True, help="Seconds a shipper waits for new records when it has none."
    )
    shipping = CaselessStrEnum(
        ["thread", "process"],
        default_value="thread",
        config=True,
        help="""Where the shippers run: `thread`s of the hub, or one `process` of their own.
        A process keeps delivery from competing with the hub's event loop for Python's
        interpreter lock, which keeps an emit's p99 low under load; it is started with the
        trail and stops with it (or by itself if the hub dies).""",
    )
    retry_max_seconds = Float(
        30.0,
        config=True,
        help="""Longest wait between a shipper's retries while its store is failing (the
        wait doubles from 0.1 s up to this), so delivery resumes within this long of the
        store's return.""",
    )

    def start(self) -> AuditTrail:
        self._key = self._load_key()
        self._hmac = hmac.new(self._key, digestmod=hashlib.sha256)
        self._validators = Validators()
        # Segments of at most an eighth of the limit, so acknowledged space is
        # reclaimed in small steps (the segment being written is never deleted).
        segment = min(8 * 2**20, max(4096, self.spool_limit_bytes // 8))
        self.spool = Spool(Path(self.spool_dir), segment_bytes=segment)
        head = self.spool.head
        self._seq = int(head["seq"]) if head else 0
        self._prev = str(head["mac"]) if head else GENESIS
        self._hub = self.hub_instance or os.uname().nodename
        self._dropped = 0
        self.dropped_total = 0
        self.emitted = 0
        sinks = [make_sink(spec) for spec in self.sinks]  # configuration errors surface here
        self._process: ShipperProcess | None = None
        if self.shipping == "process":
            for sink in sinks:
                sink.close()
            self._process = ShipperProcess(
                self.spool,
                {
                    "sinks": list(self.sinks),
                    "batch": self.batch_size,
                    "idle": self.shipper_idle,
                    "backoff_max": self.retry_max_seconds,
                },
            )
            self.shippers: list[Shipper | RemoteShipper] = list(self._process.shippers)
        else:
            self.shippers = [
                Shipper(
                    self.spool,
                    sink,
                    batch=self.batch_size,
                    idle=self.shipper_idle,
                    backoff_max=self.retry_max_seconds,
                )
                for sink in sinks
            ]
            for shipper in self.shippers:
                shipper.start()  # type: ignore[union-attr]
        self._pending_checked = 0.0
        self._pending = self.spool.pending_bytes()
        return self

    def _load_key(self) -> bytes:
        if self.hmac_key_file:
            key = Path(self.hmac_key_file).read_bytes().strip()
        else:
            key = os.environ.get("SOVEREIGN_AUDIT_HMAC_KEY", "").encode()
        if len(key) < 16:
            raise ValueError(
                "the audit chain needs an HMAC key of at least 16 bytes: set "
                "AuditTrail.hmac_key_file or SOVEREIGN_AUDIT_HMAC_KEY (generate one with "
                "`openssl rand -hex 32`)"
            )
        return key

    def _full(self) -> bool:
        now = time.monotonic()
        if now - self._pending_checked > 1.0:  # stat the segments at most once a second
            self.spool.collect([s.sink.name for s in self.shippers])
            self._pending = self.spool.pending_bytes()
            self._pending_checked = now
        return self._pending >= self.spool_limit_bytes

    def emit(self, schema_id: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """Record an event; returns the record, or None when fail-open dropped it."""
        self._validators.validate(schema_id, data)
        if self._full():
            if self.on_spool_full == "fail-closed":
                raise AuditUnavailable(
                    "The audit trail cannot record events (its spool is full while its stores "
                    "are unreachable), so this action is refused. Ask your administrator."
                )
            self._dropped += 1
            self.dropped_total += 1
            self.log.critical(
                "audit spool full: dropped a %s event (%d so far)", schema_id, self._dropped
            )
            return None
        if self._dropped:
            self._dropped, dropped = 0, self._dropped
            self.log.critical("audit spool has room again after dropping %d events", dropped)
        return self._append(schema_id, data)

    def _append(self, schema_id: str, data: dict[str, Any]) -> dict[str, Any]:
        self._seq += 1
        record = {
            "seq": self._seq,
            "id": str(uuid.uuid4()),
            "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "hub": self._hub,
            "schema": schema_id,
            "version": self._validators.versions[schema_id],
            "data": data,
            "prev": self._prev,
        }
        # One serialisation: the canonical body is what the MAC covers and,
        # with the MAC appended, the line stored.
        body = canonical(record)
        mac = self._hmac.copy()
        mac.update(body)
        record["mac"] = self._prev = mac.hexdigest()
        line = body[:-1] + b',"mac":"' + self._prev.encode() + b'"}\n'
        self.spool.append(line, self._seq)
        self._pending += len(line)
        self.emitted += 1
        for shipper in self.shippers:
            shipper.wake.set()
        return record

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def hub(self) -> str:
        """This hub instance's name in its events."""
        return self._hub

    def drain(self, timeout: float = 30.0) -> bool:
        return all(s.drain(self._seq, timeout) for s in self.shippers)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
        else:
            for shipper in self.shippers:
                shipper.stop()  # type: ignore[union-attr]
        self.spool.close()


def new_key() -> str:
    return secrets.token_hex(32)
