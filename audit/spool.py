"""The durable, append-only spool every audit record passes through.

Records are JSON lines in segment files named by their first sequence
number. ``append`` writes each line with one ``write()`` on an O_APPEND file
descriptor: once it returns, the record survives the hub process being
killed (it is in the kernel), and a background flush makes it survive a
machine crash within ``fsync_interval``. Each sink's shipper keeps a cursor
(the last sequence number its store acknowledged); segments every sink has
acknowledged are deleted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _segment_seq(path: Path) -> int:
    return int(path.stem)


class Spool:
    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 8 * 2**20,
        fsync_interval: float = 0.2,
        writer: bool = True,
    ) -> None:
        self.directory = directory
        self.segments_dir = directory / "segments"
        self.cursors_dir = directory / "cursors"
        self.segments_dir.mkdir(parents=True, exist_ok=True)
        self.cursors_dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._dirty = False
        self.writer = writer
        self._stop = threading.Event()
        self.head: dict[str, Any] | None = None
        if not writer:
            # A reader in another process (the shipper process): it must never
            # cut what looks like a torn line, which the writer may be finishing.
            return
        self.head = self._recover()
        self._flusher = threading.Thread(
            target=self._flush_loop, args=(fsync_interval,), name="audit-spool-fsync", daemon=True
        )
        self._flusher.start()

    # -- recovery -----------------------------------------------------------
    def segments(self) -> list[Path]:
        return sorted(self.segments_dir.glob("*.jsonl"), key=_segment_seq)

    def _recover(self) -> dict[str, Any] | None:
        """The last complete record; a torn last line (killed mid-write) is cut off."""
        for path in reversed(self.segments()):
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                with open(path, "r+b") as f:
                    f.truncate(end)
            lines = data[:end].splitlines()
            if lines:
                last: dict[str, Any] = json.loads(lines[-1])  # a record the hub wrote
                return last
            path.unlink()
        return None

    # -- writing -----------------------------------------------------------
    def append(self, line: bytes, seq: int) -> None:
        if not self.writer:
            raise RuntimeError("this spool was opened for reading only")
        with self._lock:
            if self._fd is None or self._size >= self.segment_bytes:
                self._rotate(seq)
            assert self._fd is not None  # noqa: S101
            os.write(self._fd, line)
            self._size += len(line)
            self._dirty = True

    def _rotate(self, seq: int) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
        current = self.segments()
        if current and self._fd is None and current[-1].stat().st_size < self.segment_bytes:
            path = current[-1]  # continue the last segment after a restart
        else:
            path = self.segments_dir / f"{seq:012d}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = path.stat().st_size

    def _flush_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.flush()

    def flush(self) -> None:
        # fsync outside the lock, on a duplicate descriptor: an emit never
        # waits for the disk, and a rotation may close the original meanwhile.
        with self._lock:
            if self._fd is None or not self._dirty:
                return
            fd = os.dup(self._fd)
            self._dirty = False
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        self._stop.set()
        if not self.writer:
            return
        self._flusher.join(timeout=2)
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None

    def since_last(
        self, is_mark: Callable[[dict[str, Any]], bool]
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The records after the last one for which ``is_mark`` holds, and that one
        (None when no segment holds one: then every record in the spool)."""
        after: list[dict[str, Any]] = []
        for path in reversed(self.segments()):
            records = list(self._records(path))
            for i in range(len(records) - 1, -1, -1):
                if is_mark(records[i]):
                    return records[i + 1 :] + after, records[i]
            after = records + after
        return after, None

    # -- reading (shippers) ----------------------------------------------------
    def reader(self, after: int) -> SpoolReader:
        return SpoolReader(self, after)

    def read_after(self, seq: int, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` complete records with sequence numbers above ``seq``."""
        out: list[dict[str, Any]] = []
        segments = self.segments()
        start = 0
        for i, path in enumerate(segments):
            if _segment_seq(path) <= seq + 1:
                start = i
        for path in segments[start:]:
            for record in self._records(path):
                if record["seq"] > seq:
                    out.append(record)
                    if len(out) >= limit:
                        return out
        return out

    @staticmethod
    def _records(path: Path) -> Iterator[dict[str, Any]]:
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
            for line in f:
                if line.endswith(b"\n"):
                    yield json.loads(line)

    # -- cursors and space ---------------------------------------------------
    def cursor(self, sink: str) -> int:
        path = self.cursors_dir / f"{sink}.json"
        try:
            return int(json.loads(path.read_text())["seq"])
        except (FileNotFoundError, ValueError, KeyError):
            return 0

    def ack(self, sink: str, seq: int) -> None:
        path = self.cursors_dir / f"{sink}.json"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"seq": seq}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def collect(self, sinks: list[str], keep_from: int | None = None) -> None:
        """Delete segments every sink has acknowledged (never the one being written),
        keeping any that holds a record from ``keep_from`` on."""
        if not sinks:
            return
        done = min(self.cursor(s) for s in sinks)
        if keep_from is not None:
            done = min(done, keep_from - 1)
        segments = self.segments()
        for current, following in itertools.pairwise(segments):
            if _segment_seq(following) - 1 <= done:
                current.unlink(missing_ok=True)

    def pending_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.segments() if p.exists())


class SpoolReader:
    """Reads records after a sequence number, remembering where it is.

    Each read continues from the byte where the last stopped, so a shipper
    parses every record once, however long the segment grows.
    """

    def __init__(self, spool: Spool, after: int) -> None:
        self.spool = spool
        self.after = after
        self._path: Path | None = None
        self._offset = 0

    def _locate(self) -> None:
        segments = self.spool.segments()
        self._path, self._offset = None, 0
        for path in segments:
            if _segment_seq(path) <= self.after + 1:
                self._path = path
        if self._path is None and segments:
            self._path = segments[0]

    def read(self, limit: int) -> list[dict[str, Any]]:
        if self._path is None or not self._path.exists():
            self._locate()
            if self._path is None:
                return []
        out: list[dict[str, Any]] = []
        while len(out) < limit:
            try:
                with open(self._path, "rb") as f:
                    f.seek(self._offset)
                    data = f.read(4 * 2**20)
            except FileNotFoundError:
                self._locate()
                if self._path is None:
                    break
                continue
            end = data.rfind(b"\n") + 1
            for line in data[:end].splitlines():
                record = json.loads(line)
                if record["seq"] > self.after:
                    out.append(record)
            self._offset += end
            if out:
                self.after = out[-1]["seq"]
            if end:
                if len(out) >= limit:
                    break
                continue
            following = [
                p for p in self.spool.segments() if _segment_seq(p) > _segment_seq(self._path)
            ]
            if not following:
                break
            self._path, self._offset = following[0], 0
        return out
