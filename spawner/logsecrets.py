"""No server's token or secret in the hub's log, whatever path logs its pod.

KubeSpawner logs the whole pod, its environment included, when the API server
refuses a create with anything but 409 (``_make_create_pod_request``: a 429 or a
5xx), and :class:`~sovereign_hub.spawner.transient.ApiRetries` then repeats that
create; kubernetes_asyncio logs response bodies at debug level. Rather than copy
KubeSpawner's create to change one log line, the spawner tells
:mod:`sovereign_hub.logscrub` which values are secret as it builds the
environment, and the scrub runs on the hub's log handlers, so every logger's
record is covered, present and future KubeSpawner log lines alike.
"""

from __future__ import annotations

from typing import Any

from sovereign_hub import logscrub


class SecretsOutOfLogs:
    """KubeSpawner mixin: each server's API token, and every environment value whose name
    looks secret (:data:`~sovereign_hub.logscrub.SECRET_NAME`), is replaced by ``[secret]``
    in any line the hub's log handlers write."""

    log: Any
    api_token: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        logscrub.install_on_handlers(self.log)

    def get_env(self) -> dict[str, Any]:
        # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
        env: dict[str, Any] = super().get_env()  # type: ignore[misc]
        if self.api_token:
            logscrub.remember(self.api_token)
        for name, value in env.items():
            if isinstance(value, str) and logscrub.SECRET_NAME.search(name):
                logscrub.remember(value)
        return env
