"""JSON lines to a file or standard output, for a cluster's log agent."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

from .base import Sink


class JsonLinesSink(Sink):
    """Appends each record as one JSON line; ``path: "-"`` writes to standard output."""

    name = "jsonl"
    option_help: ClassVar[dict[str, str]] = {
        "path": "The file records are appended to (its folder is created); `-`: standard output.",
    }

    def __init__(self, path: str = "-", name: str | None = None) -> None:
        super().__init__(name)
        self.path = path

    def deliver(self, records: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records)
        if self.path == "-":
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
