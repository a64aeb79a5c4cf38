"""Back up and restore the hub's SQLite database around an upgrade (`sovhub hub-db`).

JupyterHub migrates its database on start (`--upgrade-db`), and an older hub
refuses a database a newer one migrated, so `helm rollback` after an upgrade
needs the database as it was before. The chart's pre-upgrade hook Job runs
:func:`backup` on the state volume before the new hub starts; rolling back is
then :func:`restore` of that copy, with the hub stopped.

The copy uses SQLite's online backup API (the standard library's
``sqlite3.Connection.backup``): it is consistent even while the old hub is
still writing, unlike copying the file, which can catch a half-written page or
miss the write-ahead log. Given a ``postgresql://`` URL instead of a path, the
commands run PostgreSQL's own ``pg_dump``/``pg_restore`` (:mod:`.hubdb_pg`).
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from . import hubdb_pg

BACKUP_NAME = re.compile(r"^jupyterhub-r(\d+)\.sqlite$")
"""Backups the hook writes: ``jupyterhub-r<revision being replaced>.sqlite``."""


class HubDbError(RuntimeError):
    """A backup or restore that cannot go ahead; the message names the file and why."""


def _copy(source: Path, target: Path) -> None:
    # closing(): a connection's own `with` commits but does not close, on error neither.
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src,
        closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


def backup(database: Path, out: Path, *, keep: int = 0) -> Path | None:
    """Copy ``database`` to ``out`` (never overwriting); None when there is no database yet.

    ``keep`` > 0 removes the oldest hook backups in ``out``'s directory beyond
    that many (by revision), so the volume does not fill up over the years.
    """
    if not database.is_file():
        return None  # a first install, or a PostgreSQL hub: nothing to copy
    if out.exists():
        raise HubDbError(f"{out}: a backup of that name exists; not overwriting it")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    _copy(database, partial)
    partial.rename(out)  # a backup that exists is a whole one
    if keep > 0:
        found = sorted(
            (int(m.group(1)), p) for p in out.parent.iterdir() if (m := BACKUP_NAME.match(p.name))
        )
        for _, old in found[:-keep]:
            old.unlink()
    return out


def restore(copy: Path, database: Path) -> None:
    """Replace ``database`` with the backup ``copy``; the hub must be stopped."""
    if not copy.is_file():
        raise HubDbError(f"{copy}: no such backup")
    with closing(sqlite3.connect(f"file:{copy}?mode=ro", uri=True)) as check:
        problem = check.execute("PRAGMA integrity_check").fetchone()[0]
    if problem != "ok":
        raise HubDbError(f"{copy}: not a sound SQLite database ({problem}); not restoring it")
    _copy(copy, database)


def cmd_backup(args: argparse.Namespace) -> int:
    name = args.database
    try:
        if hubdb_pg.is_postgres(args.database):
            done: Path | None = hubdb_pg.backup(
                args.database, Path(args.out), keep=args.keep,
                password_file=args.password_file, pg_bin=args.pg_bin,
            )  # fmt: skip
            name = "the PostgreSQL database"  # the URL is not repeated in the log
        else:
            done = backup(Path(args.database), Path(args.out), keep=args.keep)
    except (HubDbError, hubdb_pg.PgError, OSError, sqlite3.Error) as exc:
        print(f"sovhub hub-db backup: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {name} to {done}" if done else f"{name}: none yet")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    name = args.database
    try:
        if hubdb_pg.is_postgres(args.database):
            hubdb_pg.restore(
                Path(args.backup), args.database,
                password_file=args.password_file, pg_bin=args.pg_bin,
            )  # fmt: skip
            name = "the PostgreSQL database"
        else:
            restore(Path(args.backup), Path(args.database))
    except (HubDbError, hubdb_pg.PgError, OSError, sqlite3.Error) as exc:
        print(f"sovhub hub-db restore: {exc}", file=sys.stderr)
        return 1
    print(f"restored {name} from {args.backup}")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser("hub-db", help="back up and restore the hub's database")
    sub = group.add_subparsers(dest="action", required=True)
    take = sub.add_parser(
        "backup",
        help="copy the database consistently (the chart's pre-upgrade hook runs this)",
        description="Copy DATABASE to OUT with SQLite's online backup, safe while the hub "
        "runs. A missing DATABASE (first install) is not an error; an existing OUT is. "
        "DATABASE may be a postgresql:// URL instead: OUT is then a pg_dump archive "
        "(custom format; name it jupyterhub-r<N>.dump for --keep).",
    )
    take.add_argument("database", metavar="DATABASE")
    take.add_argument("out", metavar="OUT")
    take.add_argument(
        "--keep",
        type=int,
        default=0,
        help="keep only this many jupyterhub-r<N>.sqlite backups beside OUT (0: keep all)",
    )
    _postgres_options(take)
    take.set_defaults(func=cmd_backup)
    back = sub.add_parser(
        "restore",
        help="put a backup back, before `helm rollback` (stop the hub first)",
        description="Check BACKUP's integrity, then replace DATABASE's contents with it. "
        "With a postgresql:// URL: check that BACKUP is a readable pg_dump archive, then "
        "pg_restore it in one transaction (--clean --if-exists --no-owner).",
    )
    back.add_argument("backup", metavar="BACKUP")
    back.add_argument("database", metavar="DATABASE")
    _postgres_options(back)
    back.set_defaults(func=cmd_restore)


def _postgres_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-file",
        metavar="FILE",
        help="PostgreSQL only: file holding the database password (passed to pg_dump or "
        "pg_restore in PGPASSWORD, never on the command line; a URL with a password, as "
        "user:pw@ or ?password=, is refused)",
    )
    parser.add_argument(
        "--pg-bin",
        metavar="DIR",
        help="PostgreSQL only: directory of pg_dump and pg_restore (default: found on PATH); "
        "their major version must be the server's or newer",
    )
