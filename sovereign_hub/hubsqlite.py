"""The hub's SQLite database in write-ahead-log mode (`hub.db.sqlite.synchronous`).

JupyterHub commits on its event loop, for nearly every authenticated request (a
token's and a user's last activity) and several times per spawn. In SQLite's
default rollback-journal mode each commit syncs the disk three or four times, and
the whole hub waits: in a profile of 1,000 spawns at once with 5,000 users logged
in, commits were a tenth of the hub's busy event loop on a local disk, and a
network volume's sync is slower still. In WAL mode a commit appends to the log
and syncs once (``FULL``) or not at all (``NORMAL``, synced at checkpoints);
readers (the pre-upgrade backup Job) no longer block the hub's writes either.

``FULL`` (default) keeps every committed transaction through a power loss.
``NORMAL`` keeps every one through a crash of the hub (the log is in the
operating system's hands once written) but may lose the last ones if the node
loses power; the database stays consistent either way (SQLite's documented
guarantee for WAL). WAL needs a local or block volume (the chart's
`sqlite-pvc`), never a network file system, where SQLite is unsafe in any mode.

SQLAlchemy passes ``connect_args`` to :func:`sqlite3.connect`, whose ``factory``
builds each connection: the pragmas are set there, for the hub's database only
(not for every SQLite engine in the process, as an event on SQLAlchemy's Engine
class would).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

Synchronous = Literal["full", "normal"]
SYNCHRONOUS: tuple[Synchronous, ...] = ("full", "normal")


class WalConnection(sqlite3.Connection):
    """A connection in WAL mode that syncs every commit (``synchronous=FULL``)."""

    synchronous = "FULL"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # journal_mode is stored in the file (every later opener gets WAL too);
        # synchronous is per connection, so both are set on each one.
        mode = self.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        # An in-memory database answers "memory": nothing to sync there anyway.
        if mode not in ("wal", "memory"):
            raise sqlite3.OperationalError(f"the hub database stayed in {mode!r} mode, not WAL")
        self.execute(f"PRAGMA synchronous={self.synchronous}")


class WalNormalConnection(WalConnection):
    """A connection in WAL mode that syncs at checkpoints only (``synchronous=NORMAL``)."""

    synchronous = "NORMAL"


FACTORIES: dict[Synchronous, type[WalConnection]] = {
    "full": WalConnection,
    "normal": WalNormalConnection,
}


def db_kwargs(synchronous: Synchronous = "full") -> dict[str, Any]:
    """``JupyterHub.db_kwargs`` for the hub's SQLite database in WAL mode.

    ``check_same_thread`` is JupyterHub's own default for SQLite, which it sets only
    when no ``connect_args`` are given.
    """
    if synchronous not in FACTORIES:
        raise ValueError(
            f"hub.db.sqlite.synchronous: {synchronous!r} is not one of {', '.join(SYNCHRONOUS)}"
        )
    return {"connect_args": {"check_same_thread": False, "factory": FACTORIES[synchronous]}}
