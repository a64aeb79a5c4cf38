"""JupyterHub's count of active servers, asked only of the spawners that can be active.

At every spawn request JupyterHub counts the running and pending servers, for
``concurrent_spawn_limit``, ``active_server_limit`` and its running-servers
metric (``UserDict.count_active_users``). It asks every spawner of every user in
its cache, and every user who has opened the home page has one: with 5,000
users logged in a count took 22 ms of the hub's one event loop, and the counts
took 18% of it in a burst of 1,000 spawn requests (docs/explanation/scale.md).

JupyterHub keeps no running tally, on purpose: a tally drifts when a spawn fails
in one of its many ways. This keeps none either. A spawner becomes active in
three ways only: one of the pending flags ``Spawner.pending`` reads turns true,
its ``server`` is set, or it is made with a server already in the database (a
hub restarted while the server ran). :class:`ActiveCounting` notes the spawner
in :data:`MAY_BE_ACTIVE` at each of them, and :func:`count_active` asks only
those spawners, with JupyterHub's own ``pending``, ``active`` and ``ready``, so
its figures are JupyterHub's. A spawner found idle leaves the set, to join it
again when it next becomes active.

:func:`install` routes JupyterHub's count here for a hub whose spawner class is
counted so; any other hub keeps JupyterHub's own count.
"""

from __future__ import annotations

import functools
import weakref
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from jupyterhub.user import UserDict
from traitlets import observe
from traitlets.config import Configurable

#: The pending flags ``Spawner.pending`` reads (a seam test pins the list to its source).
PENDING_FLAGS = ("_spawn_pending", "_stop_pending", "_check_pending", "_rename_pending")

#: Every spawner that may be active (a superset, kept exact by :func:`count_active`), with
#: its user's id once counted (reading it from the database row each time costs more than
#: the rest of the count). One per process, as JupyterHub runs one hub per process.
MAY_BE_ACTIVE: weakref.WeakKeyDictionary[Any, int | None] = weakref.WeakKeyDictionary()


#: What a spawner sets that can make it active: the pending flags, and its server.
_NOTED = frozenset((*PENDING_FLAGS, "server"))


class ActiveCounting(Configurable):
    """For a Spawner subclass: note the spawner each time it may become active.

    The setting is watched, not the reading: JupyterHub reads the flags many times
    for each time it sets one, so they stay plain attributes.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        # Noted before the set: if the set raises, the set holds one spawner too many,
        # which the next count drops; never one too few.
        if name in _NOTED and value:
            MAY_BE_ACTIVE.setdefault(self, None)
        super().__setattr__(name, value)

    @observe("orm_spawner")
    def _note_a_server_in_the_database(self, change: dict[str, Any]) -> None:
        if change["new"] is not None and change["new"].server is not None:
            MAY_BE_ACTIVE.setdefault(self, None)


def count_active(users: UserDict) -> defaultdict[str, int]:
    """JupyterHub's ``count_active_users`` of ``users``, from :data:`MAY_BE_ACTIVE`.

    A spawner counts, as in JupyterHub's count, only while its user is the one in the
    hub's cache and it is one of that user's spawners. (``dict.get`` and ``dict.values``:
    ``UserDict.get`` and ``_SpawnerDict.__getitem__`` would load or create what is missing.)
    """
    counts: defaultdict[str, int] = defaultdict(int)
    for spawner, user_id in list(MAY_BE_ACTIVE.items()):
        user = spawner.user
        if user_id is None:
            user_id = MAY_BE_ACTIVE[spawner] = getattr(user, "id", None)
        if dict.get(users, user_id) is not user or not any(
            s is spawner for s in dict.values(spawner.user.spawners)
        ):
            del MAY_BE_ACTIVE[spawner]  # no longer in the hub's cache
            continue
        pending = spawner.pending
        if pending:
            counts["pending"] += 1
            counts[pending + "_pending"] += 1
        if spawner.active:
            counts["active"] += 1
        else:
            del MAY_BE_ACTIVE[spawner]
        if spawner.ready:
            counts["ready"] += 1
    return counts


_INSTALLED = "_sovereign_active_count"


def install() -> None:
    """Route ``UserDict.count_active_users`` to :func:`count_active` for a hub whose
    spawner class is an :class:`ActiveCounting` one. Idempotent."""
    if getattr(UserDict.count_active_users, _INSTALLED, False):
        return
    upstream: Callable[[UserDict], Any] = UserDict.count_active_users

    def count_active_users(self: UserDict) -> Any:
        spawner_class = self.settings.get("spawner_class")
        if isinstance(spawner_class, type) and issubclass(spawner_class, ActiveCounting):
            return count_active(self)
        return upstream(self)

    functools.update_wrapper(count_active_users, upstream)  # its doc, and __wrapped__
    setattr(count_active_users, _INSTALLED, True)
    UserDict.count_active_users = count_active_users
