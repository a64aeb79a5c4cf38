"""Back up and restore a PostgreSQL hub database with PostgreSQL's own tools.

``sovhub hub-db backup|restore`` with a ``postgresql://`` URL instead of a
SQLite path runs ``pg_dump``/``pg_restore`` (the client must match the
server's major version or be newer; ``--pg-bin`` picks a directory). What the
command adds to calling them by hand:

- the password comes from a file (``--password-file``, e.g. the chart's
  ``hub.db.passwordSecret`` mounted) and reaches libpq through ``PGPASSWORD``
  in the child's environment, never the command line or the URL, where the
  process list would show it; a URL holding a password (``user:pw@`` or a
  ``password``/``sslpassword`` query parameter, :mod:`.dburl`) is refused;
- a backup is written to ``OUT.partial`` and renamed when ``pg_dump`` has
  finished, so a file named ``OUT`` is a whole dump; an existing ``OUT`` is
  never overwritten, and ``--keep`` prunes the oldest ``jupyterhub-r<N>.dump``;
- a restore first reads the dump's table of contents (``pg_restore --list``),
  so a damaged or foreign file is refused before the database is touched, and
  then restores in one transaction (``--single-transaction``): all or nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from .dburl import split_password

DUMP_NAME = re.compile(r"^jupyterhub-r(\d+)\.dump$")
"""Backups named for the revision being replaced, as the SQLite ones are."""


class PgError(RuntimeError):
    """A PostgreSQL backup or restore that failed or cannot go ahead, and why."""


def is_postgres(target: str) -> bool:
    return bool(re.match(r"^postgres(ql)?(\+\w+)?://", target))


def libpq_url(url: str) -> str:
    """``url`` as libpq takes it (no SQLAlchemy driver); refused if it holds a password."""
    split = split_password(url)
    if split is None:
        # Not echoed: whatever it is, it may hold a password.
        raise PgError("the database URL is not a PostgreSQL one (postgresql://user@host/db)")
    if split.found:
        raise PgError(
            f"the database URL holds a password (as {' and '.join(split.found)}): give it "
            "with --password-file instead and remove it from the URL (pg_dump and "
            "pg_restore would get the URL on their command line, which the process list shows)"
        )
    return split.url


def _tool(name: str, pg_bin: str | None) -> str:
    path = str(Path(pg_bin) / name) if pg_bin else shutil.which(name)
    if not path or not Path(path).exists():
        raise PgError(f"{name} not found (install PostgreSQL's client, or give --pg-bin)")
    return path


def _env(password_file: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    if password_file:
        env["PGPASSWORD"] = Path(password_file).read_text().strip()
    return env


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)  # noqa: S603
    if done.returncode != 0:
        raise PgError(f"{what} failed: {done.stderr.strip() or done.stdout.strip()}")


def backup(
    url: str,
    out: Path,
    *,
    keep: int = 0,
    password_file: str | None = None,
    pg_bin: str | None = None,
) -> Path:
    """Dump the database at ``url`` to ``out`` (PostgreSQL's custom format)."""
    target = libpq_url(url)
    if out.exists():
        raise PgError(f"{out}: a backup of that name exists; not overwriting it")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    argv = [_tool("pg_dump", pg_bin), "--format=custom", "--no-owner", f"--file={partial}", target]
    _run(argv, _env(password_file), "pg_dump")
    partial.rename(out)
    if keep > 0:
        found = sorted(
            (int(m.group(1)), p) for p in out.parent.iterdir() if (m := DUMP_NAME.match(p.name))
        )
        for _, old in found[:-keep]:
            old.unlink()
    return out


def restore(
    dump: Path, url: str, *, password_file: str | None = None, pg_bin: str | None = None
) -> None:
    """Replace the database at ``url``'s contents with ``dump``; the hub must be stopped."""
    target = libpq_url(url)
    if not dump.is_file():
        raise PgError(f"{dump}: no such backup")
    tool = _tool("pg_restore", pg_bin)
    env = _env(password_file)
    try:
        _run([tool, "--list", str(dump)], env, f"reading {dump}")
    except PgError as exc:
        raise PgError(f"{dump}: not a readable pg_dump archive; not restoring it ({exc})") from None
    argv = [tool, "--clean", "--if-exists", "--no-owner", "--single-transaction",
            f"--dbname={target}", str(dump)]  # fmt: skip
    _run(argv, env, "pg_restore")
