"""Shippers in a process of their own, so delivery never competes with the hub for the GIL.

With shippers as threads of the hub, every emit may wait for a shipper that
holds Python's interpreter lock while it encodes a batch or waits on a
driver: measured, that doubles an emit's p99. In this mode the hub only
appends to the spool; this process (``python -m sovereign_hub.audit.shipperd
SETTINGS``) reads the spool, delivers, and writes the cursors and a status
file per sink, which the hub reads for ``drain``, metrics and space. It stops
on SIGTERM, and by itself when the hub that started it is gone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sovereign_hub.processes import stop_process

from .shipper import Shipper
from .sinks import make_sink
from .spool import Spool

log = logging.getLogger(__name__)


def status_path(spool_dir: Path, sink: str) -> Path:
    return spool_dir / "status" / f"{sink}.json"


def serve(settings: dict[str, Any]) -> None:
    spool_dir = Path(settings["spool_dir"])
    (spool_dir / "status").mkdir(parents=True, exist_ok=True)
    spool = Spool(spool_dir, writer=False)
    shippers = [
        Shipper(spool, make_sink(spec), batch=settings["batch"], idle=settings["idle"],
                backoff_max=settings["backoff_max"])
        for spec in settings["sinks"]
    ]  # fmt: skip
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for shipper in shippers:
        shipper.start()
    parent = settings["parent"]
    while not stop.wait(0.2):
        for shipper in shippers:
            path = status_path(spool_dir, shipper.sink.name)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"delivered": shipper.delivered, "failures": shipper.failures,
                                       "last_error": shipper.last_error}))  # fmt: skip
            os.replace(tmp, path)
        if os.getppid() != parent:
            log.warning("the hub that started the audit shippers is gone; stopping")
            break
    for shipper in shippers:
        shipper.stop()


class RemoteSink:
    def __init__(self, name: str) -> None:
        self.name = name


class RemoteShipper:
    """The hub's view of one sink's shipper in the shipper process."""

    def __init__(self, spool: Spool, name: str) -> None:
        self.spool = spool
        self.sink = RemoteSink(name)
        self.wake = threading.Event()  # the process polls; waking is not needed

    @property
    def acked(self) -> int:
        return self.spool.cursor(self.sink.name)

    def _status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(status_path(self.spool.directory, self.sink.name).read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    @property
    def delivered(self) -> int:
        return int(self._status().get("delivered", 0))

    @property
    def failures(self) -> int:
        return int(self._status().get("failures", 0))

    @property
    def last_error(self) -> str | None:
        return self._status().get("last_error")

    def drain(self, seq: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.acked < seq and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.acked >= seq


class ShipperProcess:
    """Starts and stops the shipper process for one trail."""

    def __init__(self, spool: Spool, settings: dict[str, Any]) -> None:
        path = spool.directory / "shippers.json"
        path.write_text(json.dumps({**settings, "spool_dir": str(spool.directory),
                                    "parent": os.getpid()}))  # fmt: skip
        path.chmod(0o600)
        self.process = subprocess.Popen(  # noqa: S603 - our own module, with our interpreter
            [sys.executable, "-m", "sovereign_hub.audit.shipperd", str(path)]
        )
        self.shippers = [RemoteShipper(spool, spec.get("name") or spec["type"])
                         for spec in settings["sinks"]]  # fmt: skip

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout)
