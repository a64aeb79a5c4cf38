"""The status the emulated kubelet posts, built without an API server
(sandbox/kube/podstatus.py)."""

from __future__ import annotations

import pytest

from sovereign_hub.sandbox.kube import podstatus
from sovereign_hub.sandbox.kube.podstatus import exit_code, pod_status

STAMP = "2026-11-30T00:00:00Z"


def test_the_status_of_a_running_ready_pod(monkeypatch):
    monkeypatch.setattr(podstatus, "now_iso", lambda: STAMP)
    status = pod_status(
        {"name": "notebook", "image": "reg.example/nb@sha256:" + "a" * 64},
        ip="127.4.0.2",
        started_at="2026-11-29T23:59:00Z",
        pid=4242,
        restarts=1,
        phase="Running",
        state={"running": {"startedAt": STAMP}},
        ready=True,
    )
    condition = {"status": "True", "lastTransitionTime": STAMP}
    assert status == {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": "127.4.0.2",
        "podIPs": [{"ip": "127.4.0.2"}],
        "startTime": "2026-11-29T23:59:00Z",
        "conditions": [
            {"type": "PodReadyToStartContainers", **condition},
            {"type": "Initialized", **condition},
            {"type": "Ready", **condition},
            {"type": "ContainersReady", **condition},
            {"type": "PodScheduled", **condition},
        ],
        "containerStatuses": [
            {
                "name": "notebook",
                "image": "reg.example/nb@sha256:" + "a" * 64,
                "imageID": "reg.example/nb@sha256:" + "a" * 64,
                "containerID": "process://4242",
                "ready": True,
                "started": True,
                "restartCount": 1,
                "state": {"running": {"startedAt": STAMP}},
                "lastState": {},
            }
        ],
    }


def test_a_waiting_unready_container_has_no_process_and_is_not_started():
    status = pod_status(
        {"name": "nb"},
        ip="127.4.0.3",
        started_at=STAMP,
        pid=None,
        restarts=0,
        phase="Pending",
        state={"waiting": {"reason": "CreateContainerConfigError", "message": "m"}},
        ready=False,
    )
    (container,) = status["containerStatuses"]
    assert (container["containerID"], container["started"], container["ready"]) == (
        None,
        False,
        False,
    )
    ready = {c["type"]: c["status"] for c in status["conditions"]}
    assert (ready["Ready"], ready["ContainersReady"]) == ("False", "False")


@pytest.mark.parametrize(("returncode", "code"), [(0, 0), (3, 3), (-15, 143), (-9, 137)])
def test_a_process_killed_by_signal_n_exits_128_plus_n(returncode, code):
    assert exit_code(returncode) == code
