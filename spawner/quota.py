"""GPU quota holds, shared by all spawners of one hub.

:meth:`GpuLedger.decide_and_hold` decides and records the hold with no
``await`` in between, so concurrent spawns on the hub's event loop cannot
both pass the same quota check. Holds are released when a spawn fails or a
server stops, and re-registered from each running server's saved state when
the hub restarts.
"""

from __future__ import annotations

from sovereign_hub.policy import Decision, Identity, Policy, SpawnRequest, Usage, decide

Key = tuple[str, str]  # (username, server name)


class GpuLedger:
    def __init__(self) -> None:
        self._holds: dict[Key, tuple[str, int]] = {}
        self.policy: Policy | None = None
        """The policy of the last decision, whose quotas the metrics show (a hub that has
        decided nothing since it started knows its holds, not its quotas)."""

    def usage(self) -> Usage:
        gpus: dict[str, dict[str, int]] = {}
        for (user, _), (group, count) in self._holds.items():
            users = gpus.setdefault(group, {})
            users[user] = users.get(user, 0) + count
        return Usage(gpus)

    def decide_and_hold(
        self, key: Key, identity: Identity, request: SpawnRequest, policy: Policy
    ) -> Decision:
        # A server being started again gives up what it held before deciding.
        self._holds.pop(key, None)
        self.policy = policy
        decision = decide(identity, request, policy, self.usage())
        if decision.allowed and decision.plan.gpu is not None:
            gpu = decision.plan.gpu
            self._holds[key] = (gpu.quota_group, gpu.count)
        return decision

    def hold(self, key: Key, group: str, count: int) -> None:
        """Record a running server's GPUs (after a hub restart)."""
        self._holds[key] = (group, count)

    def release(self, key: Key) -> None:
        self._holds.pop(key, None)

    def held(self, key: Key) -> tuple[str, int] | None:
        return self._holds.get(key)


SHARED = GpuLedger()
"""The ledger of this hub process (JupyterHub runs one process per hub)."""
