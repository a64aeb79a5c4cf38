"""A server whose container keeps stopping fails its spawn at once, saying how it stopped.

KubeSpawner waits for a pod to become ready until ``start_timeout`` (300 s in
Zero to JupyterHub), whatever happens to it meanwhile: a notebook image that
crashes on start (a broken pin, a missing library, too little memory) has the
user watch the progress bar for five minutes and then read "did not start in
time". The kubelet knows much earlier: it restarts the container with a
growing back-off (``CrashLoopBackOff``) and reports each exit code and reason.

:func:`crash_of` is the pure judgement on a pod's status; :class:`CrashWatching`
runs a start until it ends or the pod of that start is judged crashed, and then
fails the spawn with the exit code, the kubelet's reason and advice that fits
it (``OOMKilled``: a profile with more memory). Only the pod of this start
counts (its spawn-id annotation), never an earlier server's pod being deleted.
What the container printed is never quoted: the hub's log and the audit trail
get the exit code and reason only, as a log can hold anything, a token included.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from traitlets import Float, Int
from traitlets.config import Configurable

from .transient import SPAWN_ID

T = TypeVar("T")
NOTEBOOK = "notebook"
"""The name KubeSpawner gives the single-user server's container."""
NEVER_STARTS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
"""Waiting reasons the kubelet never recovers from without a new pod."""


class ServerCrashed(RuntimeError):
    """The server's container stopped during its start; the message says how, for the user."""


def _advice(reason: str) -> str:
    if reason == "OOMKilled":
        return "It ran out of memory: choose a profile with more memory."
    return "The image or its start-up settings may be broken: tell your platform team."


def _ended_for_good(ended: Mapping[str, Any], restart_policy: str) -> bool:
    """Whether the kubelet will not restart a container that ended so (``restartPolicy``)."""
    if restart_policy == "Never":
        return True
    return restart_policy == "OnFailure" and ended.get("exitCode") == 0


def crash_of(pod: Mapping[str, Any], limit: int) -> str | None:
    """Why the server in ``pod`` will not come up, or None while it still may.

    It will not when the pod was evicted, when its container ended and the pod's
    ``restartPolicy`` does not restart it (KubeSpawner's ``OnFailure``: an exit 0),
    when it was restarted ``limit`` times and is down again, or when the kubelet
    cannot use its image at all (:data:`NEVER_STARTS`).
    """
    status = pod.get("status") or {}
    if status.get("reason") == "Evicted":
        said = str(status.get("message") or "").strip()
        return f"Kubernetes evicted your server's pod{f' ({said})' if said else ''}. Try again."
    containers = status.get("containerStatuses") or []
    notebook = next((c for c in containers if c.get("name") == NOTEBOOK), None)
    if notebook is None:
        return None
    state = notebook.get("state") or {}
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in NEVER_STARTS:
        return (
            f"Kubernetes cannot use the server's image ({waiting['reason']}). "
            "An admin must correct the image in the policy."
        )
    ended = state.get("terminated")
    policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
    if ended and _ended_for_good(ended, policy):
        reason = ended.get("reason") or "Completed"
        return (
            f"Your server's container exited with code {ended.get('exitCode')} ({reason}) "
            f"before it answered, and is not restarted. {_advice(reason)}"
        )
    restarts = int(notebook.get("restartCount") or 0)
    down = ended or waiting.get("reason") == "CrashLoopBackOff"
    last = ended or (notebook.get("lastState") or {}).get("terminated") or {}
    if limit > 0 and restarts >= limit and down and last:
        reason = last.get("reason") or "Error"
        return (
            f"Your server's container was restarted {restarts} times and stopped again, the "
            f"last time with exit code {last.get('exitCode')} ({reason}). {_advice(reason)}"
        )
    return None


class CrashWatching(Configurable):
    """For a KubeSpawner subclass: fail a start as soon as its pod is judged crashed."""

    if TYPE_CHECKING:
        # What it uses of the spawner it is mixed into.
        def own_pod(self) -> dict[str, Any] | None: ...

        _spawn_id: str
        log: logging.Logger
        namespace: str
        pod_name: str

    start_crash_restarts = Int(
        2,
        config=True,
        help="""How many times the kubelet may restart the server's container during a start
        before the spawn fails with the container's exit code and reason (the kubelet's
        back-off between restarts starts at 10 s and doubles: with 2, a server that
        crashes on start fails well within a minute instead of at ``start_timeout``).
        A container that ended for good (exit 0 under KubeSpawner's ``restartPolicy:
        OnFailure``), an evicted pod or an image the kubelet cannot use fails the
        spawn at once. 0 turns the watch off: every start waits for ``start_timeout``,
        as with stock KubeSpawner.""",
    )

    start_crash_check_seconds = Float(
        1.0,
        config=True,
        help="""Seconds between two looks at the starting pod (in the pod reflector's
        memory: no request to the API server).""",
    )

    async def until_crashed(self, start: Callable[[], Awaitable[T]]) -> T:
        """What ``start()`` returns; :class:`ServerCrashed` (and the start cancelled) if
        this start's pod is judged crashed first."""
        # Cleared before the start begins: until its manifest is built the id would be the
        # previous start's, and that start's pod, if still there, would be judged as this one.
        self._spawn_id = ""
        if self.start_crash_restarts <= 0:
            return await start()
        started = asyncio.ensure_future(start())
        try:
            while True:
                done, _ = await asyncio.wait({started}, timeout=self.start_crash_check_seconds)
                if done:
                    return started.result()
                if why := self._crash():
                    # The user's message names no pod; the admin's line does.
                    self.log.warning("pod %s/%s failed its start: %s", self.namespace,
                                     self.pod_name, why)  # fmt: skip
                    raise ServerCrashed(why)
        finally:
            if not started.done():
                started.cancel()
                await asyncio.gather(started, return_exceptions=True)

    def _crash(self) -> str | None:
        pod = self.own_pod()
        if pod is None or pod.get("metadata", {}).get("deletionTimestamp"):
            return None
        ours = (pod["metadata"].get("annotations") or {}).get(SPAWN_ID)
        if not self._spawn_id or ours != self._spawn_id:
            return None  # before this start's manifest, or an earlier server's pod
        return crash_of(pod, self.start_crash_restarts)
