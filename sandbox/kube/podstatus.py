"""What the process kubelet reports about a pod: its status and its Events.

:func:`pod_status` builds the ``status`` a kubelet posts for a one-container
pod (phase, addresses, the five conditions, the container's state) from
plain inputs, with no I/O. :class:`StatusReporter` posts it as a merge patch
of the ``status`` subresource, retried as a kubelet's status manager retries,
and records Events on a best-effort basis, as a kubelet's recorder does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .events import EventRecorder
from .store import now_iso

log = logging.getLogger(__name__)


def exit_code(returncode: int) -> int:
    """A container's exit code as a kubelet reports it: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def terminated_state(code: int, started: str, pid: int) -> dict[str, Any]:
    return {
        "exitCode": code,
        "reason": "Completed" if code == 0 else "Error",
        "startedAt": started,
        "finishedAt": now_iso(),
        "containerID": f"process://{pid}",
    }


def pod_status(
    container: dict[str, Any],
    *,
    ip: str,
    started_at: str,
    pid: int | None,
    restarts: int,
    phase: str,
    state: dict[str, Any],
    ready: bool,
    last_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The status of a pod whose one ``container`` is in ``state`` (running, waiting or
    terminated), run by process ``pid`` at ``ip`` on this host."""
    cond = "True" if ready else "False"
    stamp = now_iso()
    return {
        "phase": phase,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started_at,
        "conditions": [
            {
                "type": "PodReadyToStartContainers",
                "status": "True",
                "lastTransitionTime": stamp,
            },
            {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
            {"type": "Ready", "status": cond, "lastTransitionTime": stamp},
            {"type": "ContainersReady", "status": cond, "lastTransitionTime": stamp},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
        ],
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container.get("image", ""),
                "imageID": container.get("image", ""),
                "containerID": f"process://{pid}" if pid else None,
                "ready": ready,
                "started": "running" in state,
                "restartCount": restarts,
                "state": state,
                "lastState": last_state or {},
            }
        ],
    }


class StatusReporter:
    """Posts pods' statuses and records the kubelet's Events."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core
        self.events = EventRecorder(core, "kubelet", host_is_node=True)

    async def event(self, pod: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        """An event, on a best-effort basis as a kubelet's are: one the API server does not
        take is dropped, never the loop that reports it."""
        try:
            await self.events.record(pod, *args, **kwargs)
        except (ApiException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("event for %s dropped: %s", pod["metadata"].get("name"), exc)

    async def post(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Patch the pod's status. As a kubelet's status manager does, the update is retried
        until the API server takes it: a status lost while it restarts would leave a ready
        pod unready for ever."""
        delay = 0.2
        while True:
            try:
                await self.core.patch_namespaced_pod_status(
                    name,
                    namespace,
                    {"status": status},
                    _content_type="application/merge-patch+json",
                )
                return
            except ApiException as exc:
                if exc.status == 404:
                    return  # the pod is gone
                if exc.status != 429 and exc.status < 500:
                    log.warning("status update for %s/%s failed: %s", namespace, name, exc.status)
                    return
                reason: object = exc.status
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = type(exc).__name__
            log.info(
                "status update for %s/%s: %s, retrying in %.1fs",
                namespace, name, reason, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
