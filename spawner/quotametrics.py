"""The GPU ledger's Prometheus metrics, served by JupyterHub's own ``/hub/metrics``.

What each quota group holds now, beside its quota, so a dashboard shows how
close a group is to waiting and an alert can compare the ledger with the GPUs
the cluster's pods request. Read from the hub's ledger when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .quota import SHARED, GpuLedger


class LedgerCollector(Collector):
    """The holds of ``ledgers`` (read at each scrape), added up per quota group."""

    def __init__(self, ledgers: Iterable[GpuLedger] = (SHARED,)) -> None:
        self.ledgers = ledgers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        held = GaugeMetricFamily(
            "sovereign_gpu_held",
            "GPUs held in the hub's quota ledger by starting and running servers, by quota group.",
            labels=["quota_group"],
        )
        holders = GaugeMetricFamily(
            "sovereign_gpu_holders",
            "Users holding GPUs in the hub's quota ledger, by quota group.",
            labels=["quota_group"],
        )
        quota = GaugeMetricFamily(
            "sovereign_gpu_quota",
            "The GPU quota of each group that has one, in the policy of the hub's last decision.",
            labels=["quota_group"],
        )
        totals: dict[str, int] = {}
        users: dict[str, set[str]] = {}
        quotas: dict[str, int] = {}
        for ledger in list(self.ledgers):
            for group, by_user in ledger.usage().gpus.items():
                totals[group] = totals.get(group, 0) + sum(by_user.values())
                users.setdefault(group, set()).update(u for u, n in by_user.items() if n)
            if ledger.policy is not None:
                quotas.update(
                    (g, rules.gpu_quota)
                    for g, rules in ledger.policy.groups.items()
                    if rules.gpu_quota
                )
        # A group with a quota and nothing held is a 0, not a missing series: "held / quota"
        # in a dashboard needs both.
        for group in sorted(set(totals) | set(quotas)):
            held.add_metric([group], totals.get(group, 0))
            holders.add_metric([group], len(users.get(group, ())))
        for group, value in sorted(quotas.items()):
            quota.add_metric([group], value)
        yield held
        yield holders
        yield quota


REGISTRY.register(LedgerCollector())
