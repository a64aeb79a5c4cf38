"""What the spawner persists: pins and the allocation, read back exactly or dropped with a warning."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime

import pytest

from sovereign_hub.policy import Identity, Pin, entitlements
from sovereign_hub.spawner import SovereignSpawner
from sovereign_hub.spawner.state import (
    STATE_KEY,
    Allocation,
    allocation_from_pod,
    read_state,
    state_entry,
)
from tests.test_spawner_manifest import POLICY, plan_for

ALLOCATION = Allocation(
    profile="gpu-a100",
    region="eu",
    channel="pytorch",
    image="quay.io/jupyter/pytorch-notebook@sha256:" + "1" * 64,
    image_version="2026.10",
    gpus=1,
    gpu_type="a100",
    quota_group="eu-researchers",
    home="home-ana-eu",
    started=1764000000.5,
    node="gpu-eu-1",
)

# The shape the spawner wrote before Allocation existed: hubs restarted onto this
# code must read their running servers' allocations unchanged.
STORED = {
    "profile": "gpu-a100",
    "region": "eu",
    "channel": "pytorch",
    "image": "quay.io/jupyter/pytorch-notebook@sha256:" + "1" * 64,
    "image_version": "2026.10",
    "gpus": 1,
    "gpu_type": "a100",
    "quota_group": "eu-researchers",
    "home": "home-ana-eu",
    "started": 1764000000.5,
    "node": "gpu-eu-1",
}


def test_allocation_state_is_the_stored_shape_and_reads_back():
    assert ALLOCATION.to_state() == {**STORED, "stopped": None, "cluster": "hub"}
    # Saved before regions had clusters: the server is in the hub's own cluster.
    assert Allocation.from_state(STORED) == ALLOCATION
    stopped = dataclasses.replace(ALLOCATION, stopped="entitlement_lost", cluster="eu-fra")
    assert Allocation.from_state(stopped.to_state()) == stopped


def test_allocation_of_a_plan():
    plan = plan_for("gpu-a100")
    allocation = Allocation.of(plan, "home-ana-eu", 12.0, "eu-fra")
    assert allocation.placement() == {
        "profile": "gpu-a100",
        "region": "eu",
        "cluster": "eu-fra",
        "channel": plan.image.channel,
        "image": plan.image.image,
        "image_version": plan.image.version,
        "gpus": plan.gpu.count,
        "gpu_type": plan.gpu.type,
        "quota_group": "eu-researchers",
    }
    assert (allocation.home, allocation.started, allocation.node) == ("home-ana-eu", 12.0, None)


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        ({k: v for k, v in STORED.items() if k != "profile"}, "no profile"),
        ({**STORED, "gpus": "two"}, "gpus not a number"),
        ({**STORED, "stopped": "bored"}, "unknown stop reason"),
    ],
)
def test_an_unreadable_allocation_is_dropped_with_a_warning(broken, why, caplog):
    pin = Pin("pytorch", "2026.10", STORED["image"], datetime(2026, 10, 1, tzinfo=UTC))
    state = {STATE_KEY: {"pins": {"pytorch": pin.to_state()}, "allocation": broken}}
    with caplog.at_level(logging.WARNING):
        pins, allocation = read_state(state, logging.getLogger("t"), "ana")
    assert allocation is None, why
    assert pins == {"pytorch": pin}
    assert "ignoring unreadable allocation of ana's server" in caplog.text


def test_state_entry_round_trips():
    pin = Pin("pytorch", "2026.10", STORED["image"], datetime(2026, 10, 1, tzinfo=UTC))
    entry = state_entry({"pytorch": pin}, ALLOCATION)
    assert read_state({STATE_KEY: entry}, logging.getLogger("t"), "ana") == (
        {"pytorch": pin},
        ALLOCATION,
    )
    assert state_entry({}, None) == {"pins": {}, "allocation": None}


@pytest.mark.usefixtures("offline_kubeconfig")
async def test_check_entitlement_marks_the_coming_stop_only_when_lost():
    spawner = SovereignSpawner(_mock=True, namespace="hub")
    spawner.allocation = ALLOCATION
    researcher = entitlements(Identity("ana", frozenset({"eu-researchers"})), POLICY)
    assert spawner.check_entitlement(researcher) is True
    assert spawner.allocation.stopped is None
    nobody = entitlements(Identity("ana", frozenset()), POLICY)
    assert spawner.check_entitlement(nobody) is False
    assert spawner.allocation.stopped == "entitlement_lost"


@pytest.mark.usefixtures("offline_kubeconfig")
async def test_a_server_without_allocation_is_left_alone():
    spawner = SovereignSpawner(_mock=True, namespace="hub")
    assert spawner.check_entitlement(entitlements(Identity("ana"), POLICY)) is True


def pod(labels: dict, annotations: dict, limits: dict) -> dict:
    return {
        "metadata": {"labels": labels, "annotations": annotations},
        "spec": {"nodeName": "eu-gpu-1", "containers": [{"resources": {"limits": limits}}]},
    }


GPU_RESOURCES = {"a100": "nvidia.com/gpu", "a100-1g5gb": "nvidia.com/mig-1g.5gb"}


def test_a_gpu_pod_whose_state_was_never_saved_is_counted_from_its_labels():
    """The hub SIGKILLed between creating a pod and saving the spawner's state: after the
    restart the pod's GPU must be held again (test_spawn_faults.py found it was not)."""
    found = allocation_from_pod(
        pod(
            {
                "sovereign-hub.io/profile": "gpu-a100",
                "sovereign-hub.io/region": "eu",
                "sovereign-hub.io/channel": "pytorch",
                "sovereign-hub.io/gpu-type": "a100",
            },
            {
                "sovereign-hub.io/image": "q/p@sha256:" + "a" * 64,
                "sovereign-hub.io/image-version": "2026.11",
                "sovereign-hub.io/gpu-quota-group": "eu-researchers",
            },
            {"cpu": "8", "nvidia.com/gpu": "1"},
        ),
        GPU_RESOURCES,
    )
    assert found == Allocation(
        profile="gpu-a100",
        region="eu",
        channel="pytorch",
        image="q/p@sha256:" + "a" * 64,
        image_version="2026.11",
        gpus=1,
        gpu_type="a100",
        quota_group="eu-researchers",
        node="eu-gpu-1",
    )


def test_pods_without_the_plans_labels_or_gpus_hold_nothing():
    assert allocation_from_pod(pod({}, {}, {"nvidia.com/gpu": "4"}), GPU_RESOURCES) is None
    cpu = allocation_from_pod(
        pod({"sovereign-hub.io/profile": "cpu-small", "sovereign-hub.io/region": "us"}, {}, {}),
        GPU_RESOURCES,
    )
    assert (cpu.gpus, cpu.quota_group) == (0, None)
    odd = allocation_from_pod(
        pod({"sovereign-hub.io/profile": "p", "sovereign-hub.io/region": "eu",
             "sovereign-hub.io/gpu-type": "a100"}, {}, {"nvidia.com/gpu": "lots"}),
        GPU_RESOURCES,
    )  # fmt: skip
    assert odd.gpus == 0


@pytest.mark.usefixtures("offline_kubeconfig")
async def test_a_stop_that_fails_says_which_pod_may_still_run_and_keeps_its_gpus(
    monkeypatch, caplog
):
    """JupyterHub drops a stop's exception without a word and forgets the server: the
    spawner logs which pod may be left, and the GPUs stay held, as the pod may have them."""
    from kubespawner import KubeSpawner

    from sovereign_hub.spawner.quota import GpuLedger
    from sovereign_hub.spawner.transient import ApiUnavailable

    async def gave_up(self, now=False):
        raise TimeoutError("Could not delete pod hub/jupyter-ana")

    monkeypatch.setattr(KubeSpawner, "stop", gave_up)
    ledger = GpuLedger()
    spawner = SovereignSpawner(
        _mock=True, namespace="hub", ledger=ledger, k8s_api_request_retry_timeout=1
    )
    spawner.allocation = ALLOCATION
    ledger.hold(spawner._key, "eu-researchers", 1)
    with pytest.raises(ApiUnavailable, match="while stopping the server"):
        await spawner.stop()
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "failed (ApiUnavailable)" in line
    assert f"its pod hub/{spawner.pod_name} may still be running" in line
    assert ledger.held(spawner._key) == ("eu-researchers", 1)
