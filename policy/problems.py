"""Problems found in a policy document, and how they are shown to an admin."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

Path = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def render_path(path: Path) -> str:
    """``('channels', 'ds', 'versions', 0, 'image')`` → ``channels.ds.versions[0].image``.

    Keys that are not plain words (group names such as ``cn=ds,ou=eu``) are
    quoted so the path stays unambiguous.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "(document)"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a policy document, located as precisely as known."""

    path: Path
    message: str
    line: int | None = None
    column: int | None = None

    def render(self, file: str) -> str:
        where = file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {render_path(self.path)}: {self.message}"

    def to_json(self, file: str) -> dict[str, object]:
        return {
            "file": file,
            "line": self.line,
            "column": self.column,
            "path": render_path(self.path),
            "message": self.message,
        }


class PolicyError(ValueError):
    """A policy document that cannot be used, with every problem found in it."""

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        self.file = file
        self.problems = sorted(
            problems,
            key=lambda p: (p.line is None, p.line or 0, p.column or 0, render_path(p.path)),
        )
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{self.file}: {count} problem{'s' if count != 1 else ''} in the policy document"
        return "\n".join([head, *(p.render(self.file) for p in self.problems)])
