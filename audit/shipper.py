"""One shipper thread per sink: batches from the spool, retries with back-off, then acknowledges."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .sinks.base import Sink
from .spool import Spool

log = logging.getLogger(__name__)


class Shipper:
    def __init__(
        self,
        spool: Spool,
        sink: Sink,
        *,
        batch: int = 500,
        idle: float = 0.05,
        backoff_max: float = 30.0,
    ) -> None:
        self.spool = spool
        self.sink = sink
        self.batch = batch
        self.idle = idle
        self.backoff_max = backoff_max
        self.acked = spool.cursor(sink.name)
        self.delivered = 0
        self.failures = 0
        self.last_error: str | None = None
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"audit-ship-{sink.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout)
        self.sink.close()

    def _run(self) -> None:
        delay = 0.1
        opened = False
        reader = self.spool.reader(self.acked)
        records: list[dict[str, Any]] = []
        while not self._stop.is_set():
            if not records:
                records = reader.read(self.batch)
            if not records:
                self.wake.wait(self.idle)
                self.wake.clear()
                continue
            try:
                if not opened:
                    self.sink.open()
                    opened = True
                self.sink.deliver(records)
            except Exception as exc:  # any store failure: keep the batch and retry
                opened = False
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "audit sink %s failed (%s); retrying in %.1fs",
                    self.sink.name,
                    self.last_error,
                    delay,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            delay = 0.1
            self.last_error = None
            self.acked = records[-1]["seq"]
            self.delivered += len(records)
            self.spool.ack(self.sink.name, self.acked)
            records = []

    def drain(self, seq: int, timeout: float = 30.0) -> bool:
        """Wait until everything up to ``seq`` is delivered (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self.acked < seq and time.monotonic() < deadline:
            self.wake.set()
            time.sleep(0.01)
        return self.acked >= seq
