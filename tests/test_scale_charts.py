"""benchmarks/scale_charts.py: the load benchmark's PNG charts, from a run's results."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sovereign_hub.sandbox.loadtest import LoadPlan, Report, UserResult

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from scale_charts import Sample, rates, write_charts

PNG = b"\x89PNG\r\n\x1a\n"


def run(offset: float) -> tuple[Report, list[Sample]]:
    results = [
        UserResult(f"u{i}", "cpu", "eu", outcome="ready", ready_seconds=2.0 + i + offset,
                   started_at=float(i))
        for i in range(20)
    ] + [UserResult("late", "cpu", "eu", outcome="timeout")]  # fmt: skip
    samples = [
        Sample(seconds=t / 2, hub_cpu=t * 0.4, rss=(100 + t) * 2**20, api_requests=t * 30)
        for t in range(40)
    ]
    return Report(LoadPlan(users=21), results, seconds=20.0), samples


def test_cpu_and_api_rates_between_samples():
    samples = [Sample(0, 0.0, 1, 0), Sample(0.5, 0.25, 1, 10), Sample(0.5, 0.3, 1, 10),
               Sample(1.5, 0.75, 1, 30)]  # fmt: skip
    times, cpu, rps = rates(samples)
    assert times == [0.5, 1.5]  # a sample at the same moment is skipped, not divided by zero
    assert cpu == pytest.approx([50.0, 45.0])
    assert rps == pytest.approx([20.0, 20.0])


def test_three_charts_are_written_and_the_same_run_gives_the_same_bytes(tmp_path):
    ours, stock = run(0.0), run(1.0)
    reports = {"sovereign": ours[0], "stock": stock[0]}
    samples = {"sovereign": ours[1], "stock": stock[1]}
    written = write_charts(reports, samples, tmp_path / "a")
    assert [p.name for p in written] == ["time-to-ready.png", "hub-cpu-rss.png", "api-requests.png"]
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG)
        assert len(data) > 10_000  # axes, labels and points, not an empty canvas
    again = write_charts(reports, samples, tmp_path / "b")
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in again]
