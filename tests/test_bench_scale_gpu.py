"""bench_scale's GPU figures as a CI test of the harness: a GPU burst on a 4-GPU quota.

Real hub, proxy, spawner, authenticator, OIDC provider and audit trail; the
Kubernetes API server is the project's emulator with light pods. The same
eight GPU users meet Sovereign Hub (quota and queue) and stock KubeSpawner
(no quota), so the check is shown to find an excess where there is one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from sovereign_hub.sandbox.loadtest import LoadPlan

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_scale  # a script folder, not a package

pytestmark = pytest.mark.integration  # hubs, a provider and a cluster, through the benchmark

PLAN = LoadPlan(
    users=8,
    concurrency=8,
    arrival="burst",
    idle_seconds=1.0,
    gpu_share=1.0,
    ready_timeout=300,
    deadline_seconds=400,
)


def test_eight_gpu_users_on_a_four_gpu_quota_never_exceed_it_and_the_ledger_ends_empty(
    tmp_path,
):
    """Emulated Kubernetes: every GPU user gets a server in turn, no pod ever takes the group
    past its quota, and at the end the ledger, the servers and the pods agree at zero."""
    report, _, _ = bench_scale.measure("sovereign", PLAN, tmp_path / "ours")
    checks = report.checks
    assert report.outcomes() == {"ready": 8}, report.markdown()
    assert checks["GPU spawns: ready, refused, failed (pods)"] == "8, 0, 0 (8 pods)"
    assert checks["GPU pods beyond a quota or a per-user limit"] == "none"
    peak = checks["GPUs requested by a group's pods at once, at most"]
    group, held, quota = re.fullmatch(r"(\S+) (\d+) \(quota (\d+)\)", peak).groups()
    assert (group, quota) == ("eu-researchers", "4"), peak
    assert 1 <= int(held) <= 4, peak
    assert checks["GPUs at the end: ledger / servers / pods"] == "0 / 0 / 0"
    assert checks["audit verify"] == "clean"
    assert checks["audit: servers started / stopped (spawns failed)"] == "8 / 8 (0)"
    assert checks["user pods left at the end"] == "0"


def test_the_same_burst_on_stock_kubespawner_is_seen_past_the_quota(tmp_path):
    """Emulated Kubernetes: stock KubeSpawner has no quota, so its eight GPU pods are made at
    once and the watch names the first one beyond the group's four GPUs."""
    report, _, _ = bench_scale.measure("stock", PLAN, tmp_path / "stock")
    checks = report.checks
    beyond = checks["GPU pods beyond a quota or a per-user limit"]
    assert beyond.endswith("first group eu-researchers: 5 > 4"), beyond
    assert checks["GPUs at the end: ledger / servers / pods"] == "no ledger / n/a / 0"
