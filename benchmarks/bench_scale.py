"""One hub under a Monday-morning load: Sovereign Hub and stock KubeSpawner side by side (#18).

The same simulated users (``sovereign_hub.sandbox.loadtest``: OIDC login, spawn,
``/api/status`` through the proxy, idle, stop) run against two hubs started in
this run, one after the other, on the same machine:

- **sovereign**: the sandbox's hub (``sovereign_hub.sandbox.run.hub_config``):
  SovereignSpawner with the example policy, the audit trail in SQLite;
- **stock**: the same hub with ``spawner_class = "kubespawner"`` and a
  ``profile_list`` as Zero to JupyterHub configures one, with the same
  resources, placement and restricted security context per profile.

Both use the emulated Kubernetes with light pods (one minimal single-user
server per pod, in the cluster's process; ``sandbox/kube/lightpod.py``), so the
figures are about the hub's path, not a notebook's start-up. Measured: spawns
ready/failed/refused, time to ready p50/p95/p99, spawns per second, hub CPU
seconds and peak RSS (sampled every 0.5 s), proxy CPU, Kubernetes API
requests (clients only) per second, and the CPU of the emulated cluster's
thread (API server, scheduler, kubelet and the light pods together).

    python benchmarks/bench_scale.py --users 200 --concurrency 50 --out FILE.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from sovereign_hub.policy import Policy, load_policy
from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.sandbox.loadtest import (
    LoadEnvironment,
    LoadPlan,
    Report,
    add_plan_arguments,
    plan_from,
    population,
    run_apart,
)
from sovereign_hub.sandbox.loadtest.gpuwatch import GpuWatch, PodGpus
from sovereign_hub.sandbox.postgres import LocalPostgres
from sovereign_hub.spawner.overlay import as_list

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_charts import Sample, write_charts

ROOT = Path(__file__).resolve().parent.parent
POLICY_PATH = ROOT / "examples" / "policy.yaml"
TICKS = os.sysconf("SC_CLK_TCK")


def stock_config(namespace: str, scheduler: str) -> str:
    """Stock KubeSpawner, configured the Zero to JupyterHub way: one profile per entry; a GPU
    profile asks for its GPUs, tolerates the GPU nodes' taints and selects the product, with
    no quota (stock KubeSpawner has none)."""
    policy = load_policy(POLICY_PATH).policy
    entries = []
    for slug, profile in sorted(policy.profiles.items()):
        region = policy.regions[profile.regions[0]]
        channel = policy.channels[profile.channel]
        placement = [
            {
                "key": policy.scheduling.region_label,
                "operator": "In",
                "values": list(region.node_regions),
            }
        ]
        override: dict[str, Any] = {
            "image": channel.versions[channel.newest].image,
            "cpu_guarantee": float(profile.cpu.guarantee.value),
            "cpu_limit": float(profile.cpu.limit.value),
        }
        if profile.gpu is not None:
            gpu = policy.gpu_types[profile.gpu.type]
            override["extra_resource_guarantees"] = {gpu.resource: str(profile.gpu.count)}
            override["extra_resource_limits"] = {gpu.resource: str(profile.gpu.count)}
            override["tolerations"] = [
                {"key": t.key, "operator": "Exists", "effect": t.effect}
                if t.value is None
                else {"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect}
                for t in policy.scheduling.gpu_taints
            ]
            placement.append(
                {
                    "key": policy.scheduling.gpu_product_label,
                    "operator": "In",
                    "values": [gpu.product],
                }
            )
        override["node_affinity_required"] = as_list([{"matchExpressions": placement}])
        entries.append(
            {"slug": slug, "display_name": profile.display_name, "kubespawner_override": override}
        )
    return f"""
from sovereign_hub.spawner.security import RESTRICTED_DEFAULTS
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.namespace = {namespace!r}
c.KubeSpawner.scheduler_name = {scheduler!r}
c.KubeSpawner.start_timeout = 120
c.KubeSpawner.cmd = c.SovereignSpawner.cmd  # the sandbox's notebook command
c.KubeSpawner.profile_list = {entries!r}
for _name, _value in RESTRICTED_DEFAULTS.items():
    setattr(c.KubeSpawner, _name, _value)
c.KubeSpawner.allow_privilege_escalation = False
c.KubeSpawner.automount_service_account_token = False
"""


@dataclass
class Sampler:
    """Hub and proxy CPU and RSS, and the emulated cluster thread's CPU, over the run."""

    hub_pid: int
    cluster_tid: int | None
    api_requests: Callable[[], int] = lambda: 0
    """The cluster's count of client requests so far."""
    rss_peak: int = 0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.hub = psutil.Process(self.hub_pid)
        self.proxies = [
            p for p in self.hub.children() if "configurable-http" in " ".join(p.cmdline())
        ]
        self.start_cpu = self._hub_cpu()
        self.start_proxy = self._proxy_cpu()
        self.start_cluster = self._cluster_cpu()
        self.start_requests = self.api_requests()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _hub_cpu(self) -> float:
        t = self.hub.cpu_times()
        return t.user + t.system

    def _proxy_cpu(self) -> float:
        total = 0.0
        for p in self.proxies:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def _cluster_cpu(self) -> float:
        if self.cluster_tid is None:
            return 0.0
        fields = Path(f"/proc/self/task/{self.cluster_tid}/stat").read_text().rsplit(")", 1)[1]
        parts = fields.split()
        return (int(parts[11]) + int(parts[12])) / TICKS  # utime, stime

    def _loop(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(0.5):
            rss = self.hub.memory_info().rss
            self.rss_peak = max(self.rss_peak, rss)
            self.samples.append(
                Sample(
                    seconds=time.monotonic() - t0,
                    hub_cpu=self._hub_cpu() - self.start_cpu,
                    rss=rss,
                    api_requests=self.api_requests() - self.start_requests,
                )
            )

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self.thread.join()
        return {
            "hub_cpu": self._hub_cpu() - self.start_cpu,
            "proxy_cpu": self._proxy_cpu() - self.start_proxy,
            "cluster_cpu": self._cluster_cpu() - self.start_cluster,
            "hub_rss_peak": self.rss_peak / 2**20,
        }


def hub_settings(
    spawn_limit: int | None, api_timeout: float | None, start_timeout: float | None = None
) -> str:
    """The settings a run changes in both hubs alike (after the spawner's own)."""
    lines = []
    if start_timeout is not None:
        lines += [f"c.{cls}.start_timeout = {start_timeout:g}" for cls in SPAWNERS]
    if spawn_limit is not None:
        lines.append(f"c.JupyterHub.concurrent_spawn_limit = {spawn_limit}")
    if api_timeout is not None:
        lines += [f"c.{cls}.k8s_api_request_timeout = {api_timeout}" for cls in SPAWNERS]
    return "\n" + "\n".join(lines) + "\n"


SPAWNERS = ("KubeSpawner", "SovereignSpawner")
GPU_ROWS = (
    "GPU spawns: ready, refused, failed (pods)",
    "GPUs requested by a group's pods at once, at most",
    "GPU pods beyond a quota or a per-user limit",
    "GPUs at the end: ledger / servers / pods",
)


def measure(
    kind: str, plan: LoadPlan, state: Path, settings: str = "", hub_db: str = ""
) -> tuple[Report, dict[str, Any], list[Sample]]:
    policy = load_policy(POLICY_PATH).policy
    users = population(plan, policy)

    def extra(cluster: Cluster) -> str:
        spawner = stock_config(cluster.namespace, cluster.scheduler_name) if kind == "stock" else ""
        return spawner + settings

    with (
        LoadEnvironment(
            users, state, extra_config=extra, concurrency=plan.concurrency, hub_db=hub_db
        ) as env,
        contextlib.ExitStack() as stack,
    ):
        watch = None
        if plan.gpu_share:
            groups = {u.name: u.choice.group for u in users}
            watch = stack.enter_context(
                GpuWatch(env.cluster.kubeconfig, env.cluster.namespace, PodGpus(policy, groups))
            )
        api = env.cluster.api
        before = sum(api.requests.values()) if api else 0
        by_route_before = Counter(api.requests) if api else Counter()
        sampler = Sampler(
            env.hub.process.pid,
            env.cluster._thread.native_id,
            (lambda: sum(api.requests.values())) if api else (lambda: 0),
        )
        report = run_apart(env.hub.url, users, plan)
        usage = sampler.stop()
        made = (sum(api.requests.values()) if api else 0) - before
        usage["api_requests"] = made
        by_route = (Counter(api.requests) if api else Counter()) - by_route_before
        usage["api_requests_by_route"] = dict(by_route.most_common())
        usage["api_rps"] = made / report.seconds
        usage["nodes"] = len(env.inventory.nodes)
        try:
            running = str(env.running_servers(timeout=120))
        except requests.RequestException as exc:
            # A hub too busy to answer still leaves a report worth keeping.
            running = f"hub did not answer ({type(exc).__name__})"
        report.checks["servers running at the end"] = running
        report.checks["user pods left at the end"] = str(len(user_pods_left(env.cluster)))
        if watch is not None:
            report.checks.update(gpu_checks(env, watch, policy, report, ledger=kind == "sovereign"))
        env.hub.stop()
        if kind == "sovereign":
            verified = env.verify_audit()
            report.checks["audit verify"] = (
                "clean" if verified.returncode == 0 else verified.stdout.strip()[:200]
            )
            events = env.audit_events()
            report.checks["audit: servers started / stopped (spawns failed)"] = (
                f"{events['server-started']} / {events['server-stopped']} "
                f"({events['spawn-failed']})"
            )
    return report, usage, sampler.samples


def user_pods_left(cluster: Cluster, settle: float = 30) -> list[str]:
    """The single-user pods still in the cluster after the run (any phase), once pods that
    are terminating have had ``settle`` seconds to go: a server the hub forgot whose pod
    runs on is counted here, not in the hub's own view."""
    deadline = time.monotonic() + settle
    while True:
        left = [
            p["metadata"]["name"]
            for p in cluster.pods()
            if (p["metadata"].get("labels") or {}).get("component") == "singleuser-server"
        ]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(1)


def gpu_checks(
    env: LoadEnvironment, watch: GpuWatch, policy: Policy, report: Report, *, ledger: bool
) -> dict[str, str]:
    """The GPU figures of a run: GPU spawns by outcome, the most GPUs each group's pods
    requested at once against its quota, the pods beyond a quota or a user's limit, and at
    the end the hub's ledger against its servers' saved GPUs and the pods' (``ledger``:
    the hub has one, Sovereign Hub's; stock KubeSpawner keeps neither)."""
    gpu_profiles = {name for name, p in policy.profiles.items() if p.gpu is not None}
    outcomes = Counter(r.outcome for r in report.results if r.spawns and r.profile in gpu_profiles)
    quotas = {g: str(rules.gpu_quota) for g, rules in policy.groups.items()}

    def shown(totals: dict[str, int]) -> str:
        return ", ".join(f"{g} {n}" for g, n in sorted(totals.items()) if n) or "0"

    end = "no ledger / n/a / "
    # The watch, the ledger and the servers' saved state each lag the others a little:
    # read until they agree, for at most a minute in all.
    deadline = time.monotonic() + 60
    while True:
        seen = watch.snapshot()
        pods = {g: n for g, n in seen.by_group.items() if n}
        if not ledger:
            end += shown(pods)
            break
        left = max(1.0, deadline - time.monotonic())
        try:
            servers = {g: n for g, n in env.server_gpus(timeout=left).items() if n}
            held = {g: n for g, n in env.gpu_ledger(timeout=left).items() if n}
        except requests.RequestException as exc:
            end = f"hub did not answer ({type(exc).__name__}) / pods {shown(pods)}"
            break
        end = f"{shown(held)} / {shown(servers)} / {shown(pods)}"
        if pods == servers == held or time.monotonic() > deadline:
            break
        time.sleep(2)
    excess = seen.excesses
    return {
        "GPU spawns: ready, refused, failed (pods)": (
            f"{outcomes['ready']}, {outcomes['refused']}, "
            f"{sum(n for o, n in outcomes.items() if o not in ('ready', 'refused'))} "
            f"({seen.gpu_pods} pods)"
        ),
        "GPUs requested by a group's pods at once, at most": ", ".join(
            f"{group} {held} (quota {quotas.get(group, '?')})"
            for group, held in sorted(seen.peak.items())
        )
        or "none",
        "GPU pods beyond a quota or a per-user limit": (
            "none"
            if not excess
            else f"{len(excess)}, first {excess[0].who}: {excess[0].held} > {excess[0].limit}"
        ),
        "GPUs at the end: ledger / servers / pods": end,
    }


def summary(
    plan: LoadPlan,
    runs: dict[str, tuple[Report, dict[str, Any]]],
    settings: str = "",
    hub_db: str = "sqlite",
) -> str:
    kinds = list(runs)
    rows: list[tuple[str, list[str]]] = []

    def row(name: str, values: list[str]) -> None:
        rows.append((name, values))

    reports = [runs[k][0] for k in kinds]
    usage = [runs[k][1] for k in kinds]
    outcomes = [r.outcomes() for r in reports]
    row(
        "users logged in (all; without a server)",
        [
            f"{sum(x.logged_in for x in r.results)}; {o['logged-in']}"
            for r, o in zip(reports, outcomes, strict=True)
        ],
    )
    row("spawns ready", [str(o["ready"]) for o in outcomes])
    row("spawns failed", [str(r.failed_spawns()) for r in reports])
    row("logins failed (spawning or not)", [str(r.failed_logins()) for r in reports])
    row(
        f"spawn requests answered after {plan.answer_seconds:g} s (of which ready)",
        [r.answered_late_text() for r in reports],
    )
    row("refused by policy", [str(o["refused"]) for o in outcomes])
    row("429s waited out and retried (not failures)", [str(r.throttled()) for r in reports])
    row("gave up after repeated 429s", [str(o["throttled"]) for o in outcomes])
    row("logins tried again (hub 503, provider 500)", [str(r.login_retries()) for r in reports])
    row("cut off by the deadline", [str(r.unfinished) for r in reports])
    for q in (50, 95, 99):
        row(f"time to ready p{q} (s)", [_num(r.percentile(q)) for r in reports])
    row("wall time (s)", [f"{r.seconds:.1f}" for r in reports])
    row(
        "ready spawns per second",
        [f"{o['ready'] / r.seconds:.2f}" for o, r in zip(outcomes, reports, strict=True)],
    )
    row(
        "most spawns pending at once (ready ones)",
        [str(r.peak_concurrent_spawns()) for r in reports],
    )
    row("spawn phase: first request to last ready (s)", [_num(r.spawn_window()) for r in reports])
    row(
        "ready spawns per second in the spawn phase",
        [_rate(o["ready"], r.spawn_window()) for o, r in zip(outcomes, reports, strict=True)],
    )
    row("hub CPU (s)", [f"{u['hub_cpu']:.1f}" for u in usage])
    row("hub peak RSS (MiB)", [f"{u['hub_rss_peak']:.0f}" for u in usage])
    row("proxy CPU (s)", [f"{u['proxy_cpu']:.1f}" for u in usage])
    row("Kubernetes API requests (clients)", [f"{u['api_requests']:.0f}" for u in usage])
    row("Kubernetes API requests per second", [f"{u['api_rps']:.1f}" for u in usage])
    row("emulated cluster thread CPU (s)", [f"{u['cluster_cpu']:.1f}" for u in usage])
    row(
        "servers running at the end",
        [r.checks.get("servers running at the end", "") for r in reports],
    )
    row(
        "user pods left at the end",
        [r.checks.get("user pods left at the end", "") for r in reports],
    )
    row("audit verify", [r.checks.get("audit verify", "n/a (no audit trail)") for r in reports])
    row(
        "audit: servers started / stopped (spawns failed)",
        [r.checks.get("audit: servers started / stopped (spawns failed)", "n/a") for r in reports],
    )
    if plan.gpu_share:
        for name in GPU_ROWS:
            row(name, [r.checks.get(name, "") for r in reports])
    nodes = int(usage[0].get("nodes", 0))
    lines = [
        f"Load: {plan.users} users"
        + (f" ({plan.spawning} of them spawning)" if plan.spawners is not None else "")
        + f", at most {plan.concurrency} at a time, {plan.arrival} "
        f"arrival over {plan.ramp_seconds:g} s"
        + (", spawning together once all logged in" if plan.spawn_together else "")
        + f", {plan.idle_seconds:g} s idle each; light pods "
        f"on {nodes} emulated nodes (sized for the load).",
        *(
            ["", f"Set in both hubs: `{'; '.join(settings.strip().splitlines())}`."]
            if settings.strip()
            else []
        ),
        *(
            ["", "JupyterHub's database: PostgreSQL (a local server, a database per hub)."]
            if hub_db == "postgresql"
            else []
        ),
        "",
        "| measure | " + " | ".join(kinds) + " |",
        "| --- | " + " | ".join("---" for _ in kinds) + " |",
    ]
    lines += [f"| {name} | " + " | ".join(values) + " |" for name, values in rows]
    if "stock" in runs and "sovereign" in runs:
        ours, stock = runs["sovereign"][0], runs["stock"][0]

        def rate(report: Report) -> float:
            # With the spawns together, the login phase (the provider's pace) is left out.
            window = report.spawn_window() if plan.spawn_together else report.seconds
            return report.outcomes()["ready"] / window if window else 0.0

        ratio = rate(ours) / rate(stock) if rate(stock) else 0.0
        basis = "spawn phase" if plan.spawn_together else "wall time"
        lines += [
            "",
            f"Throughput (ready spawns per second of {basis}), Sovereign Hub / stock "
            f"KubeSpawner, same run: **{ratio:.2f}x** (target >= 0.95x).",
        ]
    lines += requests_by_route(kinds, usage, outcomes)
    for kind, (report, _) in runs.items():
        failures = report.failures()
        if failures:
            # By cause (the message's start: a user's name or address varies after it).
            causes = Counter(_cause(r.outcome, r.detail) for r in failures)
            lines += ["", f"Failures by cause ({kind}):", ""]
            lines += [f"- {n} x {cause}" for cause, n in causes.most_common(5)]
            lines += ["", f"First failures ({kind}):", ""]
            lines += [f"- {r.name}: {r.outcome}: {r.detail[:300]}" for r in failures[:5]]
    return "\n".join(lines) + "\n"


def requests_by_route(
    kinds: list[str], usage: list[dict[str, Any]], outcomes: list[dict[str, int]]
) -> list[str]:
    """The Kubernetes API requests by verb and path (names elided), in total and per
    ready spawn: what each hub's spawns cost the API server."""
    counts = [u.get("api_requests_by_route", {}) for u in usage]
    routes = sorted({r for c in counts for r in c}, key=lambda r: -max(c.get(r, 0) for c in counts))
    if not routes:
        return []
    lines = [
        "",
        "Kubernetes API requests by kind (total, and per ready spawn):",
        "",
        "| request | " + " | ".join(kinds) + " |",
        "| --- | " + " | ".join("---" for _ in kinds) + " |",
    ]
    for route in routes:
        cells = []
        for c, o in zip(counts, outcomes, strict=True):
            n = c.get(route, 0)
            cells.append(f"{n} ({n / o['ready']:.2f})" if o["ready"] else str(n))
        lines.append(f"| `{route}` | " + " | ".join(cells) + " |")
    return lines


def _cause(outcome: str, detail: str) -> str:
    """A failure's cause, with what varies from user to user (names, ports) left out."""
    general = re.sub(r"load-\d+", "load-N", detail)
    general = re.sub(r"127\.0\.0\.1(:|', port=)\d+", "127.0.0.1:P", general)
    return f"{outcome}: {general[:120]}"


def _rate(count: int, seconds: float | None) -> str:
    return "n/a" if not seconds else f"{count / seconds:.2f}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_plan_arguments(parser, users=200, ramp_seconds=20.0)
    parser.add_argument(
        "--out",
        help="also write the Markdown summary to this file, every user's result as JSON "
        "next to it (.json), and PNG charts to the folder named like it without .md",
    )
    parser.add_argument(
        "--concurrent-spawn-limit",
        type=int,
        help="JupyterHub's concurrent_spawn_limit in both hubs (default: JupyterHub's, 100)",
    )
    parser.add_argument(
        "--k8s-api-request-timeout",
        type=float,
        help="KubeSpawner's k8s_api_request_timeout in both hubs (default: KubeSpawner's, 3 s)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        help="the spawners' start_timeout in both hubs (default: the sandbox's, 120 s)",
    )
    parser.add_argument(
        "--state",
        type=Path,
        help="keep each hub's state (hub, proxy and provider logs, audit store) in this "
        "folder instead of a temporary one",
    )
    parser.add_argument(
        "--hub-db",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="JupyterHub's own database in both hubs: SQLite in the state folder (default), "
        "or a local PostgreSQL server started for the run (Debian's package), a database each",
    )
    parser.add_argument(
        "--only",
        choices=("sovereign", "stock"),
        help="run one hub only (no ratio): to estimate a run's length",
    )
    args = parser.parse_args(argv)
    plan = plan_from(args)
    settings = hub_settings(
        args.concurrent_spawn_limit, args.k8s_api_request_timeout, args.start_timeout
    )
    runs: dict[str, tuple[Report, dict[str, Any]]] = {}
    samples: dict[str, list[Sample]] = {}
    with (
        (
            contextlib.nullcontext(str(args.state))
            if args.state
            else tempfile.TemporaryDirectory(prefix="sovhub-bench-scale-")
        ) as tmp,
        contextlib.ExitStack() as stack,
    ):
        postgres = stack.enter_context(LocalPostgres()) if args.hub_db == "postgresql" else None
        for kind in (args.only,) if args.only else ("sovereign", "stock"):
            print(f"running {kind} ...", file=sys.stderr, flush=True)
            hub_db = postgres.create_database(f"hub_{kind}") if postgres else ""
            report, usage, samples[kind] = measure(
                kind, plan, Path(tmp) / kind, settings, hub_db=hub_db
            )
            runs[kind] = (report, usage)
    text = summary(plan, runs, settings, hub_db=args.hub_db)
    if args.out:
        out = Path(args.out)
        out.with_suffix(".json").write_text(
            json.dumps(
                {
                    "plan": asdict(plan),
                    "settings": settings.strip().splitlines(),
                    "hub_db": args.hub_db,
                    "hubs": {
                        kind: {
                            "usage": usage,
                            "seconds": report.seconds,
                            "unfinished": report.unfinished,
                            "checks": report.checks,
                            "results": [asdict(r) for r in report.results],
                        }
                        for kind, (report, usage) in runs.items()
                    },
                },
                indent=1,
            )
            + "\n"
        )
        charts = write_charts({k: r for k, (r, _) in runs.items()}, samples, out.with_suffix(""))
        # The docs include the table up to the marker and show the charts themselves
        # (an included file's image paths would be read from the including page's folder).
        text += (
            "\n<!-- charts -->\n"
            + "\n".join(f"![{c.stem}]({out.with_suffix('').name}/{c.name})" for c in charts)
            + "\n"
        )
        out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
