"""The GPUs a load's pods hold on the cluster, per quota group, watched through a run.

The hub's ledger cannot exceed a quota by construction (it decides and holds
in one step); what a run must show is that the *cluster* never held more: a
pod still terminating after its hold was released, or a hold released by a
failed spawn while its pod lives on, would. So this watches the pods through
the API server (list, then watch: every change, in order) and counts each
pod's GPUs (its containers' limits, which equal the requests for an extended
resource) for its user's quota group from the pod's creation until it has
finished or is gone. Pending pods count, as a Kubernetes ResourceQuota counts
them, and terminating ones until they are gone, as the scheduler keeps their
GPUs taken: stricter than a ResourceQuota, which stops counting a terminating
pod once its grace period is over.
Groups come from the simulated users, not from the spawner's own
annotations, so the same watch measures stock KubeSpawner's pods too.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config

from sovereign_hub.policy import Policy
from sovereign_hub.sandbox.kube.informer import Informer, key_of

TERMINAL = ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class Excess:
    """A moment the pods held more GPUs than a limit allows."""

    who: str
    """``group <name>`` or ``user <name>``."""
    held: int
    limit: int
    pod: str
    """``namespace/name`` of the pod whose creation took ``who`` over ``limit``."""


@dataclass(frozen=True, slots=True)
class GpuSnapshot:
    """What :class:`PodGpus` has counted, at one moment."""

    by_group: dict[str, int]
    peak: dict[str, int]
    excesses: tuple[Excess, ...]
    gpu_pods: int


@dataclass(slots=True)
class PodGpus:
    """The GPUs pods hold, per quota group and per user, from pod changes (no I/O).

    ``group_of`` maps a user's name to the group whose quota their GPUs count
    against; a user it does not know counts under ``(unknown)``.
    """

    policy: Policy
    group_of: Mapping[str, str]
    held: dict[tuple[str, str], tuple[str, str, int]] = field(default_factory=dict)
    """Each holding pod (namespace, name): its user, group and GPUs."""
    peak: dict[str, int] = field(default_factory=dict)
    """The most GPUs each group's pods held at once."""
    excesses: list[Excess] = field(default_factory=list)
    """Every pod whose GPUs took its group over its quota, or its user over their limit."""
    gpu_pods: int = 0
    """Pods seen that asked for a GPU."""
    _resources: frozenset[str] = field(init=False)
    _seen: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self._resources = frozenset(t.resource for t in self.policy.gpu_types.values())

    def gpus(self, pod: Mapping[str, Any]) -> int:
        """The GPUs the pod's containers ask for, of any GPU type in the policy."""
        total = 0
        for container in (pod.get("spec") or {}).get("containers") or []:
            limits = (container.get("resources") or {}).get("limits") or {}
            for resource, amount in limits.items():
                if resource in self._resources:
                    total += int(amount)
        return total

    def user(self, pod: Mapping[str, Any]) -> str:
        """The pod's user, as KubeSpawner names it on the pod."""
        meta = pod.get("metadata") or {}
        # KubeSpawner's annotation keeps the name as it is; its label is escaped.
        return (meta.get("annotations") or {}).get("hub.jupyter.org/username") or (
            meta.get("labels") or {}
        ).get("hub.jupyter.org/username", "")

    def change(self, kind: str, pod: Mapping[str, Any]) -> None:
        """Apply one watch event (``ADDED``, ``MODIFIED``, ``DELETED``) for ``pod``."""
        key = key_of(dict(pod))
        phase = (pod.get("status") or {}).get("phase")
        gpus = self.gpus(pod)
        uid = (pod.get("metadata") or {}).get("uid", "")
        # A pod is checked against the limits once, when first seen: a relist (after a 410)
        # shows the same pods again, and a pod's GPUs never change.
        first = bool(gpus) and uid not in self._seen
        if first:
            self._seen.add(uid)
            self.gpu_pods += 1
        if kind == "DELETED" or phase in TERMINAL or not gpus:
            self.held.pop(key, None)
            return
        user = self.user(pod)
        group = self.group_of.get(user, "(unknown)")
        self.held[key] = (user, group, gpus)
        if first:
            self._check(user, group, f"{key[0]}/{key[1]}")

    def resync(self, pods: Mapping[tuple[str, str], Mapping[str, Any]]) -> None:
        """After a full list: the holds are what the list shows."""
        self.held.clear()
        for pod in pods.values():
            self.change("ADDED", pod)

    def by_group(self) -> dict[str, int]:
        """The GPUs each group's pods hold now."""
        totals: dict[str, int] = {}
        for _, group, gpus in self.held.values():
            totals[group] = totals.get(group, 0) + gpus
        return totals

    def _check(self, user: str, group: str, pod: str) -> None:
        totals = self.by_group()
        held = totals.get(group, 0)
        self.peak[group] = max(self.peak.get(group, 0), held)
        rules = self.policy.groups.get(group)
        if rules is None:
            return
        if held > rules.gpu_quota:
            self.excesses.append(Excess(f"group {group}", held, rules.gpu_quota, pod))
        # As the policy counts a user's limit: their GPUs in this group.
        mine = sum(n for u, g, n in self.held.values() if u == user and g == group)
        if rules.per_user_gpu_limit is not None and mine > rules.per_user_gpu_limit:
            self.excesses.append(Excess(f"user {user}", mine, rules.per_user_gpu_limit, pod))

    def snapshot(self) -> GpuSnapshot:
        return GpuSnapshot(self.by_group(), dict(self.peak), tuple(self.excesses), self.gpu_pods)


class GpuWatch(contextlib.AbstractContextManager["GpuWatch"]):
    """:class:`PodGpus` kept current from a pod watch in ``namespace``, on a thread of its
    own (its own event loop and API client, from ``kubeconfig``) for the ``with`` block."""

    def __init__(self, kubeconfig: Path, namespace: str, gpus: PodGpus) -> None:
        self.kubeconfig, self.namespace, self.gpus = kubeconfig, namespace, gpus
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._task: asyncio.Task[None] | None = None
        self._synced = threading.Event()

    def __enter__(self) -> GpuWatch:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
            if not self._synced.wait(timeout=60):
                raise TimeoutError(f"the pod watch in {self.namespace} did not list within 60 s")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        self._client = await config.new_client_from_config(config_file=str(self.kubeconfig))
        core = client.CoreV1Api(self._client)
        self._informer = Informer(core.list_namespaced_pod, self._changed, namespace=self.namespace)
        self._task = asyncio.get_running_loop().create_task(self._informer.run())

    def _changed(self, kind: str, pod: dict[str, Any] | None) -> None:
        with self._lock:
            if kind == "SYNC":
                self.gpus.resync(self._informer.items)
                self._synced.set()
            elif pod is not None:
                self.gpus.change(kind, pod)

    def snapshot(self) -> GpuSnapshot:
        """What the watch has counted so far (taken while the watch thread waits)."""
        with self._lock:
            return self.gpus.snapshot()

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            if getattr(self, "_client", None) is not None:
                await self._client.close()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
        self._loop.close()
