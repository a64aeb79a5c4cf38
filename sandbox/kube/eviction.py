"""Carrying out a preemption through the API, as kube-scheduler's preemption executor does.

:mod:`.preemption` chooses (pure); this acts: the preemptor is nominated to
the node (``status.nominatedNodeName``), each victim gets the
``DisruptionTarget`` condition, is deleted with its own grace period and
gets a ``Preempted`` event, and lower-priority pods nominated to that node
lose their nomination (they may no longer fit there). A victim already gone
is what was wanted; the preemptor gone means nothing is done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .events import EventRecorder
from .placement import pod_priority
from .preemption import DISRUPTION_TARGET, PREEMPTED_REASON, Preemption
from .store import now_iso

Pod = dict[str, Any]


async def preempt(
    core: client.CoreV1Api,
    events: EventRecorder,
    pod: Pod,
    chosen: Preemption,
    pods: Iterable[Pod],
) -> None:
    """Nominate ``pod`` to ``chosen.node`` and evict ``chosen.victims`` there.

    ``pods`` (the scheduler's view) is updated in place, so the rest of the
    scheduling pass sees the nomination and the deletions at once.
    """
    meta, node = pod["metadata"], chosen.node
    try:
        await core.patch_namespaced_pod_status(
            meta["name"], meta["namespace"], {"status": {"nominatedNodeName": node}}
        )
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    pod.setdefault("status", {})["nominatedNodeName"] = node
    scheduler = pod["spec"].get("schedulerName", "default-scheduler")
    for victim in chosen.victims:
        vmeta = victim["metadata"]
        condition = {
            "type": DISRUPTION_TARGET,
            "status": "True",
            "reason": PREEMPTED_REASON,
            "message": f"{scheduler}: preempting to accommodate a higher priority pod",
            "lastTransitionTime": now_iso(),
        }
        try:
            await core.patch_namespaced_pod_status(
                vmeta["name"], vmeta["namespace"], {"status": {"conditions": [condition]}}
            )
            await core.delete_namespaced_pod(vmeta["name"], vmeta["namespace"])
        except ApiException as exc:
            if exc.status != 404:
                raise
        vmeta["deletionTimestamp"] = now_iso()
        await events.record(
            victim, "Normal", "Preempted", f"Preempted by pod {meta['uid']} on node {node}"
        )
    for other in list(pods):
        status = other.get("status") or {}
        if status.get("nominatedNodeName") != node or pod_priority(other) >= pod_priority(pod):
            continue
        with contextlib.suppress(ApiException):
            await core.patch_namespaced_pod_status(
                other["metadata"]["name"],
                other["metadata"]["namespace"],
                {"status": {"nominatedNodeName": None}},
                _content_type="application/merge-patch+json",
            )
        status.pop("nominatedNodeName", None)
