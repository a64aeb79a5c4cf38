"""``POST /hub/sovereign/upgrade[/<server>]``: the signed-in user's "upgrade at next start".

JupyterHub has no handler for changing a running server's saved options, so the
home page's button posts here. The choice is checked against the policy by the
spawner (:meth:`~sovereign_hub.spawner.upgrades.NextStartUpgrade.choose_upgrade`),
kept in the server's state in the hub database, and applied, checked again, at
the next start. Only one's own servers: no name in the path is a user's.
"""

from __future__ import annotations

from datetime import UTC, datetime

from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import web

from sovereign_hub.policy import PolicyError, cached_policy
from sovereign_hub.spawner.upgrades import UpgradeRefused

ROUTE = r"/sovereign/upgrade(?:/([^/]+))?"
"""Under the hub's prefix (``/hub/``), as ``JupyterHub.extra_handlers`` are."""


class UpgradeChoiceHandler(BaseHandler):
    """Store (``version`` set) or withdraw (``version`` empty) the choice for one channel."""

    @web.authenticated
    async def post(self, server_name: str | None = None) -> None:
        user = self.current_user
        name = server_name or ""
        if name and name not in user.orm_user.orm_spawners:
            raise web.HTTPError(404, f"You have no server named {name!r}.")
        spawner = user.spawners[name]
        if not hasattr(spawner, "choose_upgrade"):
            raise web.HTTPError(404, "This hub's spawner keeps no image pins.")
        channel = self.get_body_argument("channel", "")
        version = self.get_body_argument("version", "") or None
        try:
            policy = cached_policy(spawner.policy_file).policy
        except PolicyError:
            raise web.HTTPError(
                503, "The hub's policy cannot be read; ask your administrator."
            ) from None
        try:
            spawner.choose_upgrade(channel, version, policy, datetime.now(UTC))
        except UpgradeRefused as exc:
            raise web.HTTPError(400, str(exc)) from None
        spawner.orm_spawner.state = spawner.get_state()
        self.db.commit()
        self.log.info(
            "%s %s the upgrade of %s to %s at the next start of server %r",
            user.name,
            "chose" if version else "withdrew",
            channel,
            version,
            name,
        )
        self.redirect(url_path_join(self.hub.base_url, "home"))


handlers = [(ROUTE, UpgradeChoiceHandler)]
