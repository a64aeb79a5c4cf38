"""PNG charts of one ``bench_scale`` run: time to ready over the run, hub CPU and RSS, and
Kubernetes API requests per second, each with one line per hub measured.

matplotlib (its non-interactive Agg backend, so no display is needed) is the
ecosystem's plotting library; the charts are for the docs and a reviewer's eye,
the numbers are in the Markdown summary next to them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sovereign_hub.sandbox.loadtest import Report


@dataclass(frozen=True, slots=True)
class Sample:
    """The hub process and the cluster's API counter at one moment of a run."""

    seconds: float
    hub_cpu: float
    """CPU seconds the hub used since the run began."""
    rss: int
    """The hub's resident memory, bytes."""
    api_requests: int
    """Kubernetes API requests by clients since the run began."""


def rates(samples: Sequence[Sample]) -> tuple[list[float], list[float], list[float]]:
    """Times, hub CPU (% of one core) and API requests per second between samples."""
    times, cpu, rps = [], [], []
    for before, after in itertools.pairwise(samples):
        span = after.seconds - before.seconds
        if span <= 0:
            continue
        times.append(after.seconds)
        cpu.append(100 * (after.hub_cpu - before.hub_cpu) / span)
        rps.append((after.api_requests - before.api_requests) / span)
    return times, cpu, rps


def write_charts(
    reports: Mapping[str, Report], samples: Mapping[str, Sequence[Sample]], out_dir: Path
) -> list[Path]:
    """Write ``time-to-ready.png``, ``hub-cpu-rss.png`` and ``api-requests.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for kind, report in reports.items():
        ready = [r for r in report.results if r.ready_seconds is not None]
        ax.scatter([r.started_at for r in ready], [r.ready_seconds for r in ready], s=8, label=kind)
    ax.set(xlabel="spawn requested at (s into the run)", ylabel="time to ready (s)")
    ax.set_ylim(bottom=0)
    ax.set_title("Time to ready of each spawn")
    ax.legend()
    written.append(_save(fig, out_dir / "time-to-ready.png"))

    fig, (cpu_ax, rss_ax) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for kind, series in samples.items():
        times, cpu, _ = rates(series)
        cpu_ax.plot(times, cpu, label=kind)
        rss_ax.plot([s.seconds for s in series], [s.rss / 2**20 for s in series], label=kind)
    cpu_ax.set(ylabel="hub CPU (% of a core)")
    cpu_ax.set_ylim(bottom=0)
    rss_ax.set(xlabel="seconds into the run", ylabel="hub RSS (MiB)")
    cpu_ax.set_title("The hub process")
    cpu_ax.legend()
    written.append(_save(fig, out_dir / "hub-cpu-rss.png"))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for kind, series in samples.items():
        times, _, rps = rates(series)
        ax.plot(times, rps, label=kind)
    ax.set(xlabel="seconds into the run", ylabel="requests per second")
    ax.set_ylim(bottom=0)
    ax.set_title("Kubernetes API requests by the hub and its clients")
    ax.legend()
    written.append(_save(fig, out_dir / "api-requests.png"))
    return written


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    # No timestamp in the file, so the same run gives the same bytes.
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path
