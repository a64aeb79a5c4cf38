"""``sovhub hub-db backup|restore`` against the real PostgreSQL 15 the tests start.

The hub's database is made by JupyterHub's own ORM; the "upgrade" changes its
schema version and adds a user, as a migration would; the restore must bring
back the users and schema version exactly. The database role needs its
password here (SCRAM over TCP), given only through ``--password-file``.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from jupyterhub import orm
from sqlalchemy import text

from sovereign_hub.sandbox.postgres import server_bin
from tests.test_helm_upgrade import hub_database, users

PASSWORD = "p@ss:w/rd"  # characters a URL would have to escape
ESCAPED = "p%40ss%3Aw%2Frd"


def sovhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sovereign_hub.cli", "hub-db", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def hub_url(pg_url, postgres_server, tmp_path) -> tuple[str, Path]:
    """A hub database owned by a role that must give its password; its URL and that file."""
    role = f"hub_{uuid.uuid4().hex[:10]}"  # roles are the server's, shared by all tests
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    postgres_server.require_password(role)
    hub_database(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    return pg_url.replace("postgres@", f"{role}@"), secret


def orm_url(url: str) -> str:
    """The URL JupyterHub's ORM connects with: its driver, the password escaped in it."""
    user = url.split("//", 1)[1].split("@", 1)[0]
    return url.replace(f"postgresql://{user}@", f"postgresql+psycopg://{user}:{ESCAPED}@")


def test_backup_before_an_upgrade_and_restore_before_rollback(hub_url, tmp_path):
    url, secret = hub_url
    pg = ("--password-file", str(secret), "--pg-bin", str(server_bin()))
    dump = tmp_path / "backups" / "jupyterhub-r3.dump"
    taken = sovhub("backup", url, str(dump), *pg)
    assert taken.returncode == 0, taken.stderr
    assert "backed up the PostgreSQL database to" in taken.stdout
    assert dump.is_file()
    assert not dump.with_name(dump.name + ".partial").exists()
    # The "upgrade": the new hub migrates the schema and writes.
    session = orm.new_session_factory(orm_url(url))()
    session.add(orm.User(name="cy"))
    session.execute(text("UPDATE alembic_version SET version_num = 'from-the-future'"))
    session.commit()
    session.close()
    with pytest.raises(orm.DatabaseSchemaMismatch):
        users(orm_url(url))
    restored = sovhub("restore", str(dump), url, *pg)
    assert restored.returncode == 0, restored.stderr
    assert users(orm_url(url)) == ["ana", "bo"]
    # Never overwrites a backup.
    again = sovhub("backup", url, str(dump), *pg)
    assert again.returncode == 1
    assert "exists; not overwriting it" in again.stderr


@pytest.mark.parametrize("form", ["user:password@", "?password=", "?sslpassword="])
def test_the_password_is_never_taken_from_the_url_and_a_wrong_one_fails(hub_url, tmp_path, form):
    """In the URL, the right password would work, and sit in pg_dump's argv: refused."""
    url, _ = hub_url
    with_password = {
        "user:password@": url.replace("@", f":{ESCAPED}@", 1),
        "?password=": url + ("&" if "?" in url else "?") + f"password={ESCAPED}",
        "?sslpassword=": url + ("&" if "?" in url else "?") + f"sslpassword={ESCAPED}",
    }[form]
    refused = sovhub(
        "backup", with_password, str(tmp_path / "x.dump"), "--pg-bin", str(server_bin())
    )
    assert refused.returncode == 1
    assert "--password-file" in refused.stderr
    assert form in refused.stderr
    assert ESCAPED not in refused.stderr + refused.stdout
    assert PASSWORD not in refused.stderr + refused.stdout
    assert not (tmp_path / "x.dump").exists()
    wrong = tmp_path / "wrong"
    wrong.write_text("not-it\n")
    failed = sovhub("backup", url, str(tmp_path / "y.dump"), "--password-file", str(wrong),
                    "--pg-bin", str(server_bin()))  # fmt: skip
    assert failed.returncode == 1
    assert "password authentication failed" in failed.stderr
    assert not (tmp_path / "y.dump").exists()


def test_a_damaged_dump_is_refused_before_the_database_is_touched(hub_url, tmp_path):
    url, secret = hub_url
    pg = ("--password-file", str(secret), "--pg-bin", str(server_bin()))
    dump = tmp_path / "jupyterhub-r4.dump"
    assert sovhub("backup", url, str(dump), *pg).returncode == 0
    damaged = tmp_path / "jupyterhub-r5.dump"
    damaged.write_bytes(dump.read_bytes()[:200])
    refused = sovhub("restore", str(damaged), url, *pg)
    assert refused.returncode == 1
    assert "not a readable pg_dump archive; not restoring it" in refused.stderr
    assert users(orm_url(url)) == ["ana", "bo"]


def test_keep_prunes_the_oldest_dumps(hub_url, tmp_path):
    url, secret = hub_url
    pg = ("--password-file", str(secret), "--pg-bin", str(server_bin()))
    for revision in (1, 2, 3):
        out = tmp_path / f"jupyterhub-r{revision}.dump"
        assert sovhub("backup", url, str(out), "--keep=2", *pg).returncode == 0
    assert sorted(p.name for p in tmp_path.glob("*.dump")) == [
        "jupyterhub-r2.dump", "jupyterhub-r3.dump",
    ]  # fmt: skip
