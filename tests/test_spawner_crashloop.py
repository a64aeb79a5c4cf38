"""A server whose container keeps stopping fails its spawn at once, saying how
(sovereign_hub.spawner.crashloop).

The judgement is tested on pod statuses as the API gives them; the watch on a
stand-in spawner; the whole path with a real hub and proxy, Kubernetes being the
project's emulator (its kubelet runs the container, restarts it with a back-off and
reports its exit codes, as a real kubelet does).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

import tests.test_spawner_hub as hub_tests
from sovereign_hub.spawner.crashloop import CrashWatching, ServerCrashed, crash_of
from sovereign_hub.spawner.transient import SPAWN_ID
from tests.conftest import eventually
from tests.test_spawner_hub import add_users, audited, progress_events, spawn

start_hub = hub_tests.start_hub
policy_copy = hub_tests.policy_copy


def pod(
    *,
    phase: str = "Running",
    restarts: int = 0,
    state: dict | None = None,
    last: dict | None = None,
    name: str = "notebook",
    spawn_id: str = "this-start",
    deleting: bool = False,
    restart_policy: str = "OnFailure",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "jupyter-ana", "annotations": {SPAWN_ID: spawn_id}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    status = {
        "name": name,
        "ready": False,
        "restartCount": restarts,
        "state": state or {"running": {"startedAt": "2026-11-30T00:00:00Z"}},
        "lastState": {"terminated": last} if last else {},
    }
    return {
        "metadata": meta,
        "spec": {"restartPolicy": restart_policy},
        "status": {"phase": phase, "containerStatuses": [status]},
    }


BACKOFF = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
ERROR = {"exitCode": 3, "reason": "Error"}


def test_a_container_restarted_the_limit_and_down_again_has_crashed():
    why = crash_of(pod(restarts=2, state=BACKOFF, last=ERROR), limit=2)
    assert why == (
        "Your server's container was restarted 2 times and stopped again, the last time with "
        "exit code 3 (Error). The image or its start-up settings may be broken: tell your "
        "platform team."
    )
    # Terminated, not yet in back-off: down as well.
    assert crash_of(pod(restarts=2, state={"terminated": ERROR}), limit=2) is not None


@pytest.mark.parametrize(
    "status",
    [
        pod(),  # starting
        pod(restarts=1, state=BACKOFF, last=ERROR),  # once only: it may be a fluke
        pod(restarts=5, last=ERROR),  # running again after its restarts: it may come up
        pod(restarts=5, state=BACKOFF, last=ERROR, name="sidecar"),  # not the server
        {"metadata": {}, "status": {"phase": "Pending"}},  # no container yet
    ],
)
def test_a_container_that_may_still_come_up_has_not_crashed(status):
    assert crash_of(status, limit=2) is None


def test_out_of_memory_asks_for_a_profile_with_more_memory():
    why = crash_of(pod(restarts=3, state=BACKOFF, last={"exitCode": 137, "reason": "OOMKilled"}), 2)
    assert why is not None
    assert "exit code 137 (OOMKilled)" in why
    assert "choose a profile with more memory" in why


COMPLETED = {"terminated": {"exitCode": 0, "reason": "Completed"}}


def test_a_container_ended_for_good_or_an_unusable_image_fails_at_once():
    done = pod(phase="Succeeded", state=COMPLETED)
    assert crash_of(done, limit=2) == (
        "Your server's container exited with code 0 (Completed) before it answered, and is "
        "not restarted. The image or its start-up settings may be broken: tell your platform "
        "team."
    )
    # Judged by the pod's restartPolicy, not its phase: an admin's sidecar keeps it Running.
    assert crash_of(pod(phase="Running", state=COMPLETED), limit=2) is not None
    never = pod(state={"terminated": ERROR}, restart_policy="Never")
    assert "exited with code 3 (Error)" in (crash_of(never, limit=2) or "")
    # Restarted by the kubelet whatever its code: judged by the restart limit only.
    assert crash_of(pod(state=COMPLETED, restart_policy="Always"), limit=2) is None
    assert crash_of(pod(state={"terminated": ERROR}), limit=2) is None  # OnFailure restarts it
    bad = pod(phase="Pending", state={"waiting": {"reason": "InvalidImageName"}})
    assert crash_of(bad, limit=2) == (
        "Kubernetes cannot use the server's image (InvalidImageName). "
        "An admin must correct the image in the policy."
    )
    # A pull that fails may succeed later (a registry away): waited for, named at the timeout.
    pulling = pod(phase="Pending", state={"waiting": {"reason": "ImagePullBackOff"}})
    assert crash_of(pulling, limit=2) is None


def test_an_evicted_pod_says_what_the_kubelet_said():
    evicted = pod(phase="Failed")
    evicted["status"].update(reason="Evicted", message="The node was low on resource: memory.")
    assert crash_of(evicted, limit=2) == (
        "Kubernetes evicted your server's pod (The node was low on resource: memory.). Try again."
    )


class Watcher(CrashWatching):
    """The watch on a spawner whose pod reflector holds ``seen``; the previous start's id
    is still set, as on a spawner that started before."""

    namespace = "jupyter"
    pod_name = "jupyter-ana"

    def __init__(self, seen: dict[str, Any] | None, **traits: Any) -> None:
        super().__init__(start_crash_check_seconds=0.01, **traits)
        self.seen = seen
        self._spawn_id = "earlier"
        self.log = logging.getLogger("test")

    def own_pod(self) -> dict[str, Any] | None:
        return self.seen

    def start(self, seconds: float = 60, manifest_after: float = 0) -> Callable[[], Any]:
        """A start that builds its manifest (this start's id) after ``manifest_after`` s."""

        async def start() -> str:
            await asyncio.sleep(manifest_after)
            self._spawn_id = "this-start"
            await asyncio.sleep(seconds)
            return "http://127.0.0.1:8888"

        return start


CRASHED = pod(restarts=2, state=BACKOFF, last=ERROR)


def test_the_watch_fails_the_start_and_cancels_it(caplog):
    async def run() -> None:
        watcher = Watcher(CRASHED)
        with pytest.raises(ServerCrashed, match="was restarted 2 times and stopped again"):
            await watcher.until_crashed(watcher.start())
        assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    asyncio.run(run())
    assert "pod jupyter/jupyter-ana failed its start: Your server's container" in caplog.text


EARLIER = pod(restarts=2, state=BACKOFF, last=ERROR, spawn_id="earlier")


@pytest.mark.parametrize(
    ("seen", "traits", "manifest_after"),
    [
        (EARLIER, {}, 0),  # not this start's
        # The previous start's pod, seen before this start built its manifest (while the
        # spawner still had the previous start's id): not this start's either.
        (EARLIER, {}, 0.1),
        (pod(restarts=2, state=BACKOFF, last=ERROR, deleting=True), {}, 0),  # being deleted
        (None, {}, 0),  # not seen yet
        (CRASHED, {"start_crash_restarts": 0}, 0),  # the watch turned off
    ],
)
def test_the_watch_leaves_a_start_alone_unless_its_own_pod_crashed(seen, traits, manifest_after):
    async def run() -> str:
        watcher = Watcher(seen, **traits)
        return await watcher.until_crashed(watcher.start(0.2, manifest_after))

    assert asyncio.run(run()) == "http://127.0.0.1:8888"


CRASH = [sys.executable, "-c", "import sys; print('secret-looking output'); sys.exit(3)"]
EXITS = [sys.executable, "-c", "print('done')"]
HOOK = f"""
def _per_user(spawner):
    spawner.cmd = {{"crash": {CRASH!r}, "exits": {EXITS!r}}}[spawner.user.name]
c.SovereignSpawner.pre_spawn_hook = _per_user
"""


async def test_a_crashing_server_fails_its_spawn_long_before_the_start_timeout_in_emulated_cluster(
    kube, core, start_hub, policy_copy, tmp_path, monkeypatch
):
    """Emulated Kubernetes: a server that exits 3 on start fails after two restarts, one that
    exits 0 at once; each says how it stopped in the progress stream, its pod is deleted,
    and the audit trail has the failure and no start or stop of a server."""
    from sovereign_hub.audit.store import read

    audit, store = audited(tmp_path, monkeypatch)
    hub = start_hub(policy_copy, start_timeout=240, extra_config=HOOK + audit)
    add_users(hub, "us-analysts", "crash", "exits")
    began = time.monotonic()
    for user in ("crash", "exits"):
        assert spawn(hub, user, profile="cpu-small").status_code in (202, 500)
    crash, exits = (progress_events(hub, user, timeout=200) for user in ("crash", "exits"))
    assert time.monotonic() - began < 120  # the start timeout is 240 s
    assert crash[-1].get("failed") is True, crash
    crashed = (
        "Your server's container was restarted 2 times and stopped again, the last time with "
        "exit code 3 (Error). The image or its start-up settings may be broken: tell your "
        "platform team."
    )
    assert crash[-1]["message"] == f"Spawn failed: {crashed}"
    assert exits[-1].get("failed") is True, exits
    assert "exited with code 0 (Completed) before it answered" in exits[-1]["message"]
    for user in ("crash", "exits"):
        model = hub.wait_for_server(user, ready=False)
        assert model["servers"] == {}, model

    async def pods_gone() -> bool:
        return not (await core.list_namespaced_pod(kube.namespace)).items

    await eventually(pods_gone, timeout=60)
    hub.stop()  # the spool is delivered before the hub exits
    families = [r["schema"].split("/")[-2] for r in read(str(store))]
    assert families.count("spawn-failed") == 2, families
    assert not {"server-started", "server-stopped"} & set(families), families
    failed = [r["data"] for r in read(str(store)) if "/spawn-failed/" in r["schema"]]
    assert crashed in [f["detail"] for f in failed], failed
