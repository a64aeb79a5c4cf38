"""JupyterHub's count of active servers, asked only of the spawners that can be active.

The count is checked against JupyterHub's own ``UserDict.count_active_users`` on
real JupyterHub users, spawners and database rows (SQLite in memory), through the
steps JupyterHub takes: pending flags set and cleared, servers set and cleared,
users dropped from the cache and loaded again (a hub restart finds its running
servers in the database).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jupyterhub import orm
from jupyterhub.objects import Hub, Server
from jupyterhub.spawner import Spawner
from jupyterhub.user import UserDict
from kubespawner import KubeSpawner

from sovereign_hub.spawner import activecount
from sovereign_hub.spawner.activecount import MAY_BE_ACTIVE, PENDING_FLAGS, count_active
from sovereign_hub.spawner.spawner import SovereignSpawner
from tests.conftest import examples

pytestmark = pytest.mark.usefixtures("offline_kubeconfig")


class CountedSpawner(SovereignSpawner):
    """Ours, built without a cluster (KubeSpawner's ``_mock``), as a hub builds it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(_mock=True, **kwargs)


class StockSpawner(KubeSpawner):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(_mock=True, **kwargs)


def jupyterhub_count(users: UserDict) -> dict[str, int]:
    """JupyterHub's own count: every spawner of every cached user."""
    return dict(UserDict.count_active_users.__wrapped__(users))


def new_users(spawner_class: type) -> UserDict:
    db = orm.new_session_factory("sqlite:///:memory:")()
    return UserDict(lambda: db, {"spawner_class": spawner_class, "hub": Hub(), "db": db})


def add_user(users: UserDict, name: str) -> Any:
    orm_user = orm.User(name=name)
    users.db.add(orm_user)
    users.db.commit()
    return users.add(orm_user)


def test_the_pending_flags_are_those_jupyterhub_reads():
    """If JupyterHub's ``Spawner.pending`` reads another flag, a spawner could be active
    without being noted: this fails first."""
    source = inspect.getsource(Spawner.pending.fget)
    assert tuple(re.findall(r"self\.(_\w+_pending)", source)) == PENDING_FLAGS


def test_jupyterhub_still_counts_through_the_user_dict_and_sets_servers_through_the_spawner():
    """The seams the count relies on, pinned against the installed JupyterHub: its count is
    ``UserDict.count_active_users(self)``, called at each spawn request and at startup, and a
    spawner's server is a property whose setter JupyterHub uses."""
    from jupyterhub import app
    from jupyterhub import user as users_module
    from jupyterhub.handlers import base

    upstream = UserDict.count_active_users.__wrapped__
    assert str(inspect.signature(upstream)) == "(self)"
    for module in (base, app):
        assert "self.users.count_active_users()" in inspect.getsource(module), module.__name__
    server = inspect.getattr_static(Spawner, "server")
    assert isinstance(server, property)
    assert server.fset is not None
    assert "spawner.server = " in inspect.getsource(users_module)
    # The ORM row's server is set only inside that setter: no other way to a server.
    package = Path(app.__file__).parent
    setters = [
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if "tests" not in path.parts and "orm_spawner.server = " in path.read_text()
    ]
    assert setters == ["spawner.py"]


def test_the_predicates_the_count_asks_are_jupyterhubs_own():
    """The count asks ``pending``, ``active`` and ``ready`` and reads ``server`` as JupyterHub's
    Spawner defines them; an override in our mixins or a newer KubeSpawner could make a
    spawner active some other way, so it must be looked at first."""
    for name in ("pending", "active", "ready", "server"):
        assert inspect.getattr_static(SovereignSpawner, name) is inspect.getattr_static(
            Spawner, name
        ), name


async def test_setting_a_flag_or_a_server_notes_the_spawner():
    users = new_users(CountedSpawner)
    for i, name in enumerate((*PENDING_FLAGS, "server")):
        spawner = add_user(users, f"u{i}").spawners[""]
        assert spawner not in MAY_BE_ACTIVE
        setattr(spawner, name, False if name != "server" else None)
        assert spawner not in MAY_BE_ACTIVE, name
        if name == "server":
            orm_server = orm.Server(base_url=f"/user/u{i}/")
            users.db.add(orm_server)
            users.db.commit()
            spawner.server = Server(orm_server=orm_server)
        else:
            setattr(spawner, name, True)
        assert spawner in MAY_BE_ACTIVE, name


async def test_the_hub_counts_through_us_only_with_our_spawners():
    assert getattr(UserDict.count_active_users, "_sovereign_active_count", False)
    ours, stock = new_users(CountedSpawner), new_users(StockSpawner)
    for users in (ours, stock):
        for i in range(3):
            add_user(users, f"u{i}").spawners[""]._spawn_pending = True
    assert ours.count_active_users() == {"pending": 3, "spawn_pending": 3, "active": 3}
    assert stock.count_active_users() == {"pending": 3, "spawn_pending": 3, "active": 3}
    # A stock spawner is never noted, so the stock hub's figures are JupyterHub's scan.
    assert not any(isinstance(s, StockSpawner) for s in MAY_BE_ACTIVE)


async def test_idle_spawners_are_not_asked():
    """Logged-in users each with an idle spawner: the count asks only the active one."""
    users = new_users(CountedSpawner)
    spawners = [add_user(users, f"u{i}").spawners[""] for i in range(50)]
    spawners[7]._spawn_pending = True
    asked: list[Any] = []
    original = CountedSpawner.pending
    CountedSpawner.pending = property(lambda self: asked.append(self) or original.fget(self))  # type: ignore[method-assign,assignment]
    try:
        assert dict(users.count_active_users()) == {
            "pending": 1,
            "spawn_pending": 1,
            "active": 1,
        }
    finally:
        CountedSpawner.pending = original  # type: ignore[method-assign]
    assert set(asked) == {spawners[7]}


STEPS = st.lists(
    st.tuples(
        st.sampled_from(["flag", "server", "drop", "reload", "collect", "pop", "replace"]),
        st.integers(0, 3),  # user
        st.sampled_from(["", "gpu"]),  # server name
        st.sampled_from(PENDING_FLAGS),
        st.booleans(),
    ),
    max_size=60,
)


# Each example makes a database (about 0.3 s), so fewer of them, with longer walks.
@settings(max_examples=examples(40), suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(steps=STEPS)
def test_the_count_is_jupyterhubs_after_any_steps(steps):
    # KubeSpawner builds its API client on the running loop.
    asyncio.run(follow(steps))


async def follow(steps: list[tuple[str, int, str, str, bool]]) -> None:
    users = new_users(CountedSpawner)
    ids = [add_user(users, f"u{i}").id for i in range(4)]
    assert dict(count_active(users)) == jupyterhub_count(users)
    for action, who, name, flag, on in steps:
        user = users[ids[who]]  # loads the user again if it was dropped
        if name not in user.orm_spawners:
            user.get_or_create_spawner(name, name)
        spawner = user.spawners[name]
        if action == "flag":
            setattr(spawner, flag, on)
        elif action == "server":
            if on:
                # As JupyterHub's User.spawn makes a server.
                orm_server = orm.Server(base_url=f"/user/u{who}/{name}/")
                users.db.add(orm_server)
                users.db.commit()
                spawner.server = Server(orm_server=orm_server)
            else:
                spawner.server = None
            users.db.commit()
        elif action == "drop":
            # JupyterHub drops a user from its cache (e.g. deleted, or at a restart)
            del users[ids[who]]
        elif action == "reload":
            # A restarted hub: new User objects, and a Spawner for each server in the
            # database, as JupyterHub's init_spawners makes them.
            users = UserDict(users.db_factory, users.settings)
            for id_ in ids:
                reloaded = users[id_]
                for server_name, orm_spawner in reloaded.orm_spawners.items():
                    if orm_spawner.server is not None:
                        reloaded.spawners[server_name]
        elif action == "collect":
            gc.collect()
        elif action == "pop":
            # JupyterHub forgets a spawner object (as when it replaces a failed one).
            user.spawners.pop(name, None)
        elif action == "replace":
            # A failed spawner replaced at the next spawn: the new one is not in
            # user.spawners, so neither count asks it, even with a flag set.
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(RuntimeError("the spawn failed"))
            failed.exception()  # retrieved: no "never retrieved" warning
            spawner._spawn_future = failed
            setattr(user.get_spawner(name, replace_failed=True), flag, on)
        assert dict(count_active(users)) == jupyterhub_count(users), (action, who, name)


def test_install_is_idempotent():
    installed = UserDict.count_active_users
    activecount.install()
    assert UserDict.count_active_users is installed
