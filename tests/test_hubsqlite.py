"""The hub's SQLite database in WAL mode: the chart's setting reaches JupyterHub's own
session factory, a local run with a PostgreSQL hub gets no SQLite factory, and the
pre-upgrade backup of a WAL database is whole while the hub writes and after it crashed."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from jupyterhub import orm
from sqlalchemy import text
from traitlets.config import Config

from sovereign_hub import hubdb, hubsqlite
from sovereign_hub.hubconfig import Site, configure
from sovereign_hub.hubsqlite import WalConnection
from tests.test_hubconfig import chart_values, pod_site


@pytest.mark.parametrize(("setting", "level"), [("full", 2), ("normal", 1)])
def test_jupyterhubs_session_gets_wal_with_the_chosen_sync(tmp_path, setting, level):
    factory = orm.new_session_factory(
        f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}", **hubsqlite.db_kwargs(setting)
    )
    db = factory()
    db.add(orm.User(name="ana"))
    db.commit()
    pragma = {p: db.execute(text(f"PRAGMA {p}")).scalar() for p in ("journal_mode", "synchronous")}
    assert pragma == {"journal_mode": "wal", "synchronous": level}
    # JupyterHub's own connect hook still runs: foreign keys enforced.
    assert db.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert (tmp_path / "jupyterhub.sqlite-wal").exists()
    db.close()


def test_a_wrong_setting_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"hub.db.sqlite.synchronous: 'off' is not one of full"):
        hubsqlite.db_kwargs("off")  # type: ignore[arg-type]


def test_the_charts_setting_reaches_the_hub_and_postgresql_gets_no_factory(tmp_path):
    c = Config()
    values = chart_values(tmp_path, sets=("hub.db.sqlite.synchronous=normal",))
    configure(c, values, pod_site(tmp_path))
    assert c.JupyterHub.db_kwargs["connect_args"]["factory"] is hubsqlite.WalNormalConnection
    # A local run whose caller chose PostgreSQL for the hub: no SQLite factory for psycopg.
    local = Config()
    local.JupyterHub.db_url = "postgresql+psycopg://hub@127.0.0.1/hub"
    site = Site.local(tmp_path, policy_file=tmp_path / "policy.yaml", viewer_port=18000)
    configure(local, chart_values(tmp_path), site)
    assert "db_kwargs" not in local.JupyterHub


def test_a_callers_engine_settings_are_kept_and_a_bare_file_name_is_sqlite(tmp_path):
    site = Site.local(tmp_path, policy_file=tmp_path / "policy.yaml", viewer_port=18000)
    values = chart_values(tmp_path)
    c = Config()
    c.JupyterHub.db_url = "hub.sqlite"  # JupyterHub makes a bare name sqlite:///hub.sqlite
    c.JupyterHub.db_kwargs = {"pool_pre_ping": True, "connect_args": {"timeout": 30}}
    configure(c, values, site)
    assert c.JupyterHub.db_kwargs == {
        "pool_pre_ping": True,
        "connect_args": {"timeout": 30, "check_same_thread": False, "factory": WalConnection},
    }


def test_values_kept_from_an_older_release_may_carry_nulls(tmp_path):
    """`helm upgrade --reuse-values` from a release whose chart had no such keys: the
    template renders a default, and the hub reads a null as the default too."""
    values = chart_values(tmp_path, sets=("proxy.apiConcurrency=null",))
    assert values["proxy"]["apiConcurrency"] == 100
    values["proxy"]["apiConcurrency"] = None
    values["hub"]["db"]["sqlite"] = None
    c = Config()
    configure(c, values, pod_site(tmp_path))
    assert c.ConfigurableHTTPProxy.concurrency == 100
    assert c.JupyterHub.db_kwargs["connect_args"]["factory"] is WalConnection


def test_the_schema_refuses_an_unknown_sync_level(tmp_path):
    # helm's own schema check (the chart's values.schema.json) refuses it, naming the field.
    with pytest.raises(AssertionError, match=r"synchronous.*(full|normal)"):
        chart_values(tmp_path, sets=("hub.db.sqlite.synchronous=off",))


WRITE_THEN_CRASH = """
import os, sqlite3, sys
from sovereign_hub.hubsqlite import WalConnection
db = sqlite3.connect(sys.argv[1], factory=WalConnection)
db.execute("CREATE TABLE IF NOT EXISTS users (name TEXT)")
db.execute("INSERT INTO users VALUES ('crashed-after-commit')")
db.commit()
os._exit(9)  # no close, no checkpoint: the commit is in the -wal file only
"""


def test_the_backup_of_a_wal_database_is_whole_while_written_and_after_a_crash(tmp_path):
    database = tmp_path / "jupyterhub.sqlite"
    subprocess.run([sys.executable, "-c", WRITE_THEN_CRASH, str(database)], check=False)
    assert Path(f"{database}-wal").stat().st_size > 0
    after_crash = hubdb.backup(database, tmp_path / "backups" / "jupyterhub-r1.sqlite")
    assert after_crash is not None
    with sqlite3.connect(after_crash) as copy:
        assert copy.execute("SELECT name FROM users").fetchall() == [("crashed-after-commit",)]
    # The hub holds the database open and has committed more (in the log, not yet in the
    # main file): the backup has it, and restoring the first one brings back that state.
    hub = sqlite3.connect(database, factory=hubsqlite.WalConnection)
    hub.execute("INSERT INTO users VALUES ('while-running')")
    hub.commit()
    running = hubdb.backup(database, tmp_path / "backups" / "jupyterhub-r2.sqlite")
    assert running is not None
    with sqlite3.connect(running) as copy:
        assert len(copy.execute("SELECT name FROM users").fetchall()) == 2
    hub.close()
    hubdb.restore(after_crash, database)
    with sqlite3.connect(database, factory=hubsqlite.WalConnection) as restored:
        assert restored.execute("SELECT name FROM users").fetchall() == [("crashed-after-commit",)]
        assert restored.execute("PRAGMA integrity_check").fetchone() == ("ok",)
