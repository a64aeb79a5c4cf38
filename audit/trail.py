"""The audit trail of one hub: validate, chain, spool, ship.

``emit`` does the hub's share synchronously and cheaply: it validates the
event against its schema, links it to its predecessor with an HMAC, and
appends it to the spool. Everything slow (stores, networks, retries) happens
in shipper threads, so emitting never waits on a store, and a store outage
only delays delivery.

The trail also writes records about itself: an ``epoch-started`` record when
it starts without a chain position (see :mod:`.epoch`), and signed
``checkpoint`` records every so many records or seconds and when it stops
(see :mod:`.checkpoint`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from traitlets import CaselessStrEnum, Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from sovereign_hub.reporting import AuditUnavailable

from . import schemas
from .chain import GENESIS, canonical, escape_surrogates, key_id
from .checkpoint import digest, family_of, fingerprint, leaf, signed_payload
from .epoch import new_epoch_id, previous_end
from .schemas import Validators
from .shipper import Shipper
from .shipprocess import RemoteShipper, ShipperProcess
from .signing import Signer
from .sinks import Sink, make_sink
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
    signing_key_file = Unicode(
        "",
        config=True,
        help="""File holding the Ed25519 private key (PEM, PKCS#8, unencrypted; a Kubernetes
        Secret) that signs checkpoints, so anyone with the public key can verify the trail
        without the HMAC key (`sovhub audit verify --public-key`). Generate a pair with
        `sovhub audit keygen`. Empty (the default): checkpoints are still written but
        unsigned, protecting the tail only for holders of the HMAC key.""",
    )
    checkpoint_every_records = Integer(
        1000,
        config=True,
        help="""Write a checkpoint after this many records (default 1000). A removed or
        truncated record is provable from the next checkpoint on. 0: no count limit (then
        `checkpoint_every_seconds` must be set). Signing costs about 50 µs once per
        checkpoint, not per emit. Both 0: no checkpoints at all, so nothing proves a
        trail complete (not recommended).""",
    )
    checkpoint_every_seconds = Float(
        60.0,
        config=True,
        help="""Write a checkpoint at least this often, in seconds, even when nothing
        happened (default 60), so a verifier can tell a trail whose tail was cut off from
        one that is merely quiet: the tail after a checkpoint that is older than this is
        reported as truncated. 0: no time limit (not recommended: a truncated tail is then
        only provable when the trail stopped cleanly).""",
    )
    epoch_lookup_timeout = Float(
        3.0,
        config=True,
        help="""Seconds a hub starting without a chain position waits for its first SQL
        sink to say where the previous chain ended (default 3). When none answers, the new
        epoch records `unknown` and the hub starts anyway: never an outage.""",
    )
    hub_instance = Unicode(
        "",
        config=True,
        help="""Name of this hub in events (default: the host name). Each hub instance has
        its own chain.""",
    )
    sinks: List[dict[str, Any]] = List(
        config=True,
        help="""Where records are delivered, each a dict with `type` and its options, e.g.
        `{"type": "sqlite", "path": "/srv/audit.sqlite"}`. `type` is `sqlite`, `postgresql`,
        `jsonl`, `syslog`, `loki`, `opensearch`, `webhook`, or a sink class of your own as
        `package.module:Class`. Options are checked against the sink's typed fields when the
        trail starts. Several at once; each has its own shipper and cursor. Empty: none.""",
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
        if self.checkpoint_every_records < 0 or self.checkpoint_every_seconds < 0:
            raise ValueError(
                "AuditTrail.checkpoint_every_records and checkpoint_every_seconds must be >= 0 "
                f"(got {self.checkpoint_every_records} and {self.checkpoint_every_seconds})"
            )
        self._key = self._load_key()
        self._kid = key_id(self._key)
        self._hmac = hmac.new(self._key, digestmod=hashlib.sha256)
        self._signer = Signer.from_file(self.signing_key_file) if self.signing_key_file else None
        self._validators = Validators()
        self._lock = threading.Lock()
        # Segments of at most an eighth of the limit, so acknowledged space is
        # reclaimed in small steps (the segment being written is never deleted).
        segment = min(8 * 2**20, max(4096, self.spool_limit_bytes // 8))
        self.spool = Spool(Path(self.spool_dir), segment_bytes=segment)
        head = self.spool.head
        self._seq = int(head["seq"]) if head else 0
        self._prev = str(head["mac"]) if head else GENESIS
        self._epoch = str(head.get("epoch", "")) if head else new_epoch_id()
        self._hub = self.hub_instance or os.uname().nodename
        self._dropped = 0
        self.dropped_total = 0
        self.emitted = 0
        self._checkpoints = self.checkpoint_every_records > 0 or self.checkpoint_every_seconds > 0
        self._resume_checkpoints()
        sinks = [make_sink(spec) for spec in self.sinks]  # configuration errors surface here
        # No chain position: a new hub, or its spool was lost. Start a new epoch
        # that names where the stored chain ended; never refuse.
        previous = (
            previous_end(sinks, self._hub, self.epoch_lookup_timeout) if head is None else None
        )
        self._start_shippers(sinks)
        self._pending_checked = 0.0
        self._pending = self.spool.pending_bytes()
        if previous is not None:
            self._begin_epoch(previous)
        self._ticker_stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.checkpoint_every_seconds > 0:
            self._ticker = threading.Thread(
                target=self._tick, name="audit-checkpoints", daemon=True
            )
            self._ticker.start()
        return self

    def _start_shippers(self, sinks: list[Sink]) -> None:
        self._process: ShipperProcess | None = None
        self._threads: list[Shipper] = []
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
            # Threads of the hub: the trail starts and stops them itself.
            self._threads = [
                Shipper(
                    self.spool,
                    sink,
                    batch=self.batch_size,
                    idle=self.shipper_idle,
                    backoff_max=self.retry_max_seconds,
                )
                for sink in sinks
            ]
            self.shippers = list(self._threads)
            for shipper in self._threads:
                shipper.start()

    def _begin_epoch(self, previous: dict[str, Any]) -> None:
        """Write the first record of a new epoch, naming where the stored chain ended."""
        # Say when the first checkpoint is due, so removing every checkpoint
        # of a young epoch is as visible as cutting an older one.
        previous["every_records"] = self.checkpoint_every_records
        previous["every_seconds"] = math.ceil(self.checkpoint_every_seconds)
        self._validators.validate(schemas.EPOCH_STARTED, previous)
        with self._lock:
            self._write(schemas.EPOCH_STARTED, previous)
        # A new hub (the store holds none of its chain) is routine; a lost
        # spool or an unreachable store is worth an operator's attention.
        level = logging.INFO if previous["previous_state"] == "none" else logging.WARNING
        self.log.log(
            level, "audit trail %s: no chain position in %s; started epoch %s (previous: %s)",
            self._hub, self.spool_dir, self._epoch, previous["previous_state"],
        )  # fmt: skip

    def _resume_checkpoints(self) -> None:
        """Find the last checkpoint in the spool and the records written after it, so
        the next checkpoint covers exactly what the previous one did not."""
        self._leaves: list[bytes] = []
        self._first = self._seq + 1
        self._last_checkpoint = ""
        self._checkpoint_at = time.monotonic()
        if not self._checkpoints:
            return
        after, last = self.spool.since_last(lambda r: family_of(r) == "checkpoint")
        if last is not None and last.get("epoch", "") == self._epoch:
            self._last_checkpoint = fingerprint(last)
        if after:
            self._first = int(after[0]["seq"])
            self._leaves = [leaf(r) for r in after]

    def _tick(self) -> None:
        interval = self.checkpoint_every_seconds
        while not self._ticker_stop.wait(min(1.0, interval / 4)):
            if time.monotonic() - self._checkpoint_at >= interval:
                with self._lock:
                    self._checkpoint(final=False)

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
            # Records since the last checkpoint stay until the next covers them,
            # so a restarted trail can still hash them.
            sinks = [s.sink.name for s in self.shippers]
            keep = self._first if self._checkpoints else None
            self.spool.collect(sinks, keep_from=keep)
            self._pending = self.spool.pending_bytes()
            delivered = min((s.acked for s in self.shippers), default=self._seq)
            if (
                self._checkpoints
                and self._pending >= self.spool_limit_bytes
                and delivered >= self._first
            ):
                # Every store has what is kept only for the next checkpoint: write
                # it now rather than refuse service for space the stores freed.
                with self._lock:
                    self._checkpoint(final=False)
                self.spool.collect(sinks, keep_from=self._first)
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
        with self._lock:
            record = self._write(schema_id, data)
            self.emitted += 1
            if 0 < self.checkpoint_every_records <= len(self._leaves):
                self._checkpoint(final=False)
        return record

    def _write(self, schema_id: str, data: dict[str, Any], at: str = "") -> dict[str, Any]:
        """Chain and spool one record (the caller holds the lock)."""
        seq = self._seq + 1
        record = {
            "seq": seq,
            "id": str(uuid.uuid4()),
            "time": at or _now(),
            "hub": self._hub,
            "kid": self._kid,
            "schema": schema_id,
            "version": self._validators.versions[schema_id],
            "data": data,
            "prev": self._prev,
        }
        if self._epoch:  # the epoch-less chain of earlier versions continues without one
            record["epoch"] = self._epoch
        # One serialisation: the canonical body is what the MAC covers and,
        # with the MAC appended, the line stored.
        try:
            body = canonical(record)
        except TypeError:
            # A lone surrogate (a JSON "\\ud800" escape in a request or a claim) has no
            # UTF-8 form: record it as its escape text rather than lose the event.
            record["data"] = escape_surrogates(data)
            body = canonical(record)
        # The sequence number is taken only once the record can be written, so a record
        # that cannot be encoded leaves no gap that `audit verify` would report as a drop.
        self._seq = seq
        mac = self._hmac.copy()
        mac.update(body)
        record["mac"] = self._prev = mac.hexdigest()
        mac_bytes = self._prev.encode()
        if self._checkpoints:
            leaf_hash = hashlib.sha256(body)
            leaf_hash.update(mac_bytes)
            self._leaves.append(leaf_hash.digest())  # what checkpoint.leaf() recomputes
        line = body[:-1] + b',"mac":"' + mac_bytes + b'"}\n'
        self.spool.append(line, self._seq)
        self._pending += len(line)
        for shipper in self.shippers:
            shipper.wake.set()
        return record

    def _checkpoint(self, *, final: bool) -> dict[str, Any]:
        """Write a checkpoint covering the records since the last (the caller holds the lock)."""
        data: dict[str, Any] = {
            "actor": "system",
            "subject": "",
            "first_seq": self._first,
            "last_seq": self._seq,
            "digest": digest(self._leaves),
            "previous": self._last_checkpoint,
            "every_records": self.checkpoint_every_records,
            "every_seconds": math.ceil(self.checkpoint_every_seconds),
            "final": final,
            "key_id": self._signer.key_id if self._signer else "",
            "signature": "",
        }
        if self._signer is not None:
            # The signature covers the record's identity, which _write fixes;
            # so sign a preview of exactly what it will write.
            at = _now()
            preview = {
                "hub": self._hub, "epoch": self._epoch, "seq": self._seq + 1,
                "time": at, "schema": schemas.CHECKPOINT, "data": data,
            }  # fmt: skip
            data["signature"] = self._signer.sign(signed_payload(preview))
            record = self._write(schemas.CHECKPOINT, data, at)
        else:
            record = self._write(schemas.CHECKPOINT, data)
        self._leaves = []
        self._first = self._seq + 1
        self._last_checkpoint = fingerprint(record)
        self._checkpoint_at = time.monotonic()
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

    @property
    def epoch(self) -> str:
        """This trail's epoch id ("" for a chain begun before epochs existed)."""
        return self._epoch

    def checkpoint(self) -> dict[str, Any]:
        """Write a checkpoint now (tests, and before an export that must be provable)."""
        with self._lock:
            return self._checkpoint(final=False)

    def stop(self, final_delivery_timeout: float = 5.0) -> None:
        """Seal the chain with a final checkpoint and stop the shippers.

        The shippers get up to ``final_delivery_timeout`` seconds to deliver
        what is left, so a cleanly stopped trail's stores end in its final
        checkpoint; whatever they cannot deliver stays in the spool for the
        next start."""
        self._ticker_stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        if self._checkpoints:
            with self._lock:
                self._checkpoint(final=True)
        if final_delivery_timeout > 0:
            self.drain(final_delivery_timeout)
        if self._process is not None:
            self._process.stop()
        else:
            for shipper in self._threads:
                shipper.stop()
        self.spool.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_key() -> str:
    return secrets.token_hex(32)
