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
    namespace: str
    pod_name: str
    pod_reflector: Any
    cluster_name: str

    def policy(self) -> Any:  # supplied by SovereignSpawner
        raise NotImplementedError

    def _hold_gpus(self) -> None:
        allocation = self.allocation
        if allocation is not None and allocation.gpus and allocation.quota_group:
            self.ledger.hold(self._key, allocation.quota_group, allocation.gpus)

    def own_pod(self) -> dict[str, Any] | None:
        """This server's pod as the pod reflector last saw it, if it saw one."""
        reflector = self.pod_reflector
        return reflector.pods.get(f"{self.namespace}/{self.pod_name}") if reflector else None

    def _adopt(self, pod: dict[str, Any] | None) -> None:
        """Count a running pod whose allocation was never saved (see allocation_from_pod)."""
        types = {name: t.resource for name, t in self.policy().gpu_types.items()}
        found = allocation_from_pod(pod, types) if pod else None
        # The pod was seen by the reflector of the cluster this spawner faces.
        self.allocation = found and dataclasses.replace(found, cluster=self.cluster_name)
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
