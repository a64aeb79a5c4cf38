"""What a running server holds: its Allocation, its GPUs in the hub's ledger, and whether
its user is still entitled to it. A mixin of SovereignSpawner (which supplies ``policy()``,
``_key``, ``ledger`` and ``allocation``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from sovereign_hub.policy import Entitlements

from .state import allocation_from_pod


class AllocationTracking:
    allocation: Any
    ledger: Any
    _key: Any

    def policy(self) -> Any:  # supplied by SovereignSpawner
        raise NotImplementedError

    def _hold_gpus(self) -> None:
        allocation = self.allocation
        if allocation is not None and allocation.gpus and allocation.quota_group:
            self.ledger.hold(self._key, allocation.quota_group, allocation.gpus)

    def _adopt(self, pod: dict[str, Any] | None) -> None:
        """Count a running pod whose allocation was never saved (see allocation_from_pod)."""
        types = {name: t.resource for name, t in self.policy().gpu_types.items()}
        self.allocation = allocation_from_pod(pod, types) if pod else None
        self._hold_gpus()

    def check_entitlement(self, granted: Entitlements) -> bool:
        """Whether this running server's profile and region are still in ``granted``.

        What the authenticator asks at a refresh. When they are not, the stop that
        follows is reported with the reason ``entitlement_lost``. A server with
        no allocation (not started by this spawner) is left alone: True.
        """
        allocation = self.allocation
        if allocation is None:
            return True
        grant = granted.get(allocation.profile)
        if grant is not None and allocation.region in grant.regions:
            return True
        self.allocation = dataclasses.replace(allocation, stopped="entitlement_lost")
        return False
