"""A scheduler that binds pending pods through the API, as kube-scheduler does.

It watches nodes and pods, decides with :func:`.placement.place`, binds with
the ``pods/binding`` subresource, and for a pod that fits nowhere records a
``FailedScheduling`` event (aggregated: the count goes up when the same
message repeats) and the ``PodScheduled=False`` condition. Pods are retried
whenever a node or pod changes, and every ``resync`` seconds, highest
priority first (then oldest), as kube-scheduler's active queue orders them. A
pod whose cycle fails on an API error (the API server restarting) is retried
the same way, and the scheduler carries on, as kube-scheduler requeues it.

One scheduler serves several *profiles*, as one kube-scheduler process does:
each is a ``schedulerName`` with its own scoring (:class:`.placement.Profile`).
A pod naming a scheduler no profile serves is left alone: it stays Pending
with no event, as on a real cluster where no such scheduler runs.

A pod that fits nowhere may preempt: :mod:`.preemption` chooses the node
and victims, :mod:`.eviction` nominates the pod there and evicts them; the
pod is bound once the room is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from . import rawapi
from .events import EventRecorder
from .eviction import preempt
from .informer import Informer
from .placement import DEFAULT_PROFILE, Profile, place, pod_priority
from .preemption import ineligible, select
from .store import now_iso

log = logging.getLogger(__name__)
REPEAT_EVENT_AFTER = 30.0


class Scheduler:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str | None = None,
        scheduler_name: str = "default-scheduler",
        resync: float = 2.0,
        node_selector: str | None = None,
        profiles: dict[str, Profile] | None = None,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.scheduler_name = scheduler_name
        # schedulerName -> scoring; ``scheduler_name`` is always served, by default scoring.
        self.profiles = {scheduler_name: DEFAULT_PROFILE, **(profiles or {})}
        self.resync = resync
        self.wake = asyncio.Event()
        # Events name the profile that wrote them, as each kube-scheduler profile records its own.
        self.recorders = {name: EventRecorder(self.core, name) for name in self.profiles}
        # ``node_selector``: a label selector for the nodes this scheduler may use.
        selectors = {"label_selector": node_selector} if node_selector else {}
        self.nodes = Informer(self.core.list_node, self._changed, **selectors)
        if namespace is None:
            self.pods = Informer(self.core.list_pod_for_all_namespaces, self._changed)
        else:
            self.pods = Informer(self.core.list_namespaced_pod, self._changed, namespace=namespace)
        # pod uid -> (message, event name, count, when last reported)
        self._reported: dict[str, tuple[str, str, int, float]] = {}

    def _changed(self, kind: str, obj: dict[str, Any] | None) -> None:
        self.wake.set()

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.nodes.run()), asyncio.create_task(self.pods.run())]
        try:
            await self.nodes.synced.wait()
            await self.pods.synced.wait()
            while True:
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
                # lands as the event is set, and the scheduler then never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.resync):
                        await self.wake.wait()
                self.wake.clear()
                await self.schedule_pending()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _pending(self) -> list[dict[str, Any]]:
        pods = [
            p
            for p in self.pods.items.values()
            if not p["spec"].get("nodeName")
            and not p["metadata"].get("deletionTimestamp")
            and p["spec"].get("schedulerName", "default-scheduler") in self.profiles
            and p.get("status", {}).get("phase", "Pending") == "Pending"
        ]
        return sorted(
            pods,
            key=lambda p: (
                -pod_priority(p),
                p["metadata"].get("creationTimestamp", ""),
                p["metadata"]["name"],
            ),
        )

    async def schedule_pending(self) -> None:
        for pod in self._pending():
            try:
                await self._schedule(pod)
            except Exception as exc:
                # As kube-scheduler: a failed cycle (the API server away, a bind refused) puts
                # the pod back in the queue and the scheduler carries on; the next wake or
                # resync tries again. Left to propagate, it ended this task, and no pod was
                # ever placed again.
                meta = pod["metadata"]
                log.warning(
                    "scheduling %s/%s failed (%s: %s); retrying in the next cycle",
                    meta["namespace"], meta["name"], type(exc).__name__, exc,
                )  # fmt: skip

    async def _schedule(self, pod: dict[str, Any]) -> None:
        missing = await self._missing_claim(pod)
        nodes = list(self.nodes.items.values())
        if missing:
            total = len(nodes)
            message = (
                f'0/{total} nodes are available: persistentvolumeclaim "{missing}" not found. '
                f"preemption: 0/{total} nodes are available: {total} Preemption is not helpful "
                "for scheduling."
            )
            await self._unschedulable(pod, message)
            return
        profile = self.profiles[pod["spec"].get("schedulerName", "default-scheduler")]
        placement = place(pod, nodes, self.pods.items.values(), profile)
        if placement.node is not None:
            await self._bind(pod, placement.node)
            return
        message = placement.message
        if placement.resource_only:
            filters = message.split(" preemption: ")[0]
            chosen = select(pod, nodes, self.pods.items.values(), placement.resource_only)
            if chosen is not None:
                recorder = self._recorder(pod)
                await preempt(self.core, recorder, pod, chosen, self.pods.items.values())
                message = filters  # preemption succeeded: the filters' failure alone
            elif why := ineligible(pod, self.pods.items.values()):
                message = f"{filters} preemption: {why}"
        await self._unschedulable(pod, message)

    async def _missing_claim(self, pod: dict[str, Any]) -> str | None:
        ns = pod["metadata"]["namespace"]
        for volume in pod["spec"].get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            try:
                await self.core.read_namespaced_persistent_volume_claim(claim, ns)
            except ApiException as exc:
                if exc.status == 404:
                    return str(claim)
                raise
        return None

    async def _bind(self, pod: dict[str, Any], node: str) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        try:
            # The generated client cannot deserialise the Status a binding returns.
            await rawapi.call(
                self.core.create_namespaced_pod_binding, meta["name"], meta["namespace"], body
            )
        except ApiException as exc:
            if exc.status in (404, 409):  # gone, or bound meanwhile: the watch will tell
                return
            raise
        # Count it on the node now, before the watch reports it, for the next pod.
        pod["spec"]["nodeName"] = node
        self._reported.pop(meta["uid"], None)
        await self._event(
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
        )
        await self._bind_claims(pod)

    async def _bind_claims(self, pod: dict[str, Any]) -> None:
        """Emulated volume provisioning: a claim used by a scheduled pod becomes Bound."""
        ns = pod["metadata"]["namespace"]
        for volume in pod["spec"].get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            data = await rawapi.call(self.core.read_namespaced_persistent_volume_claim, claim, ns)
            if data.get("status", {}).get("phase") == "Bound":
                continue
            size = data["spec"]["resources"]["requests"]["storage"]
            await self.core.patch_namespaced_persistent_volume_claim_status(
                claim,
                ns,
                {
                    "status": {
                        "phase": "Bound",
                        "accessModes": data["spec"]["accessModes"],
                        "capacity": {"storage": size},
                    }
                },
                _content_type="application/merge-patch+json",
            )

    async def _unschedulable(self, pod: dict[str, Any], message: str) -> None:
        meta = pod["metadata"]
        previous = self._reported.get(meta["uid"])
        now = time.monotonic()
        if previous and previous[0] == message and now - previous[3] < REPEAT_EVENT_AFTER:
            return
        if previous and previous[0] == message:
            count = previous[2] + 1
            try:
                await self.core.patch_namespaced_event(
                    previous[1],
                    meta["namespace"],
                    {"count": count, "lastTimestamp": now_iso()},
                    _content_type="application/merge-patch+json",
                )
                self._reported[meta["uid"]] = (message, previous[1], count, now)
                return
            except ApiException:
                pass
        name = await self._event(pod, "Warning", "FailedScheduling", message)
        self._reported[meta["uid"]] = (message, name, 1, now)
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": now_iso(),
        }
        try:
            await self.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": {"conditions": [condition]}}
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _recorder(self, pod: dict[str, Any]) -> EventRecorder:
        return self.recorders[pod["spec"].get("schedulerName", "default-scheduler")]

    async def _event(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> str:
        return await self._recorder(pod).record(pod, type_, reason, message)
