"""A load generator in the spirit of JupyterHub's hubtraf: many simulated users, one real hub.

Each simulated user, on its own thread, does what a person does on Monday at
nine: logs in through the real OpenID Connect provider (the browser's walk,
:func:`~sovereign_hub.sandbox.oidc.login_via_provider`), asks for a server
with a profile and region its group is entitled to (drawn from the policy),
waits until the hub reports it ready, opens ``/user/<name>/api/status``
through the proxy, stays idle for a while, and stops the server.

Arrivals come as a ramp (spread evenly over ``ramp_seconds``) or a burst (all
at once); at most ``concurrency`` users are active at a time, the number of
users is fixed and the whole run has a deadline. Everything stays on
127.0.0.1.

:func:`run` drives an existing hub; :class:`LoadEnvironment` starts one like
the sandbox's (OIDC provider, emulated Kubernetes, hub with the SQLite audit
trail) with light pods (``sandbox/kube/lightpod.py``), so a thousand servers
fit on a small machine. ``python -m sovereign_hub.loadtest --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import requests

from sovereign_hub.policy import Policy, load_policy
from sovereign_hub.sandbox.hubprocess import Hub, free_port
from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.sandbox.kube.inventory import load_inventory
from sovereign_hub.sandbox.oidc import OidcProvider, login_via_provider

ROOT = Path(__file__).resolve().parent.parent
Arrival = Literal["ramp", "burst"]
Outcome = Literal["ready", "failed", "refused", "timeout", "error"]
# The claim a region's rules read, per region of the example policy's groups.
COUNTRY = {"eu": "DE", "us": "US"}


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """How many users arrive, how, and how long each one stays."""

    users: int = 30
    concurrency: int = 15
    arrival: Arrival = "ramp"
    ramp_seconds: float = 10.0
    idle_seconds: float = 2.0
    ready_timeout: float = 180.0
    deadline_seconds: float = 600.0
    gpu: bool = False
    """Draw GPU profiles too (they may be queued or refused by quota)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.users < 1 or self.concurrency < 1:
            raise ValueError(f"users and concurrency must be at least 1, not {self}")
        if self.arrival not in ("ramp", "burst"):
            raise ValueError(f"arrival {self.arrival!r} is not 'ramp' or 'burst'")


@dataclass(frozen=True, slots=True)
class Choice:
    group: str
    profile: str
    region: str


@dataclass(frozen=True, slots=True)
class SimUser:
    name: str
    choice: Choice
    arrives: float
    """Seconds after the start of the run."""

    def claims(self) -> dict[str, object]:
        return {
            "sub": self.name,
            "preferred_username": self.name,
            "groups": [self.choice.group],
            "country": COUNTRY.get(self.choice.region, "DE"),
        }


@dataclass(slots=True)
class UserResult:
    name: str
    profile: str
    region: str
    outcome: Outcome = "error"
    detail: str = ""
    login_seconds: float = 0.0
    ready_seconds: float | None = None
    """From the spawn request to the hub reporting the server ready."""
    status_code: int | None = None
    """What ``/user/<name>/api/status`` answered through the proxy."""
    started_at: float = 0.0


def choices(policy: Policy, *, gpu: bool = False) -> list[Choice]:
    """Every (group, profile, region) the policy entitles a group to, GPU profiles only if asked."""
    out = []
    for group_name, group in sorted(policy.groups.items()):
        for profile_name in group.profiles:
            profile = policy.profiles[profile_name]
            if profile.gpu is not None and not gpu:
                continue
            for region in profile.regions:
                if region in group.regions:
                    out.append(Choice(group_name, profile_name, region))
    return out


def arrival_times(plan: LoadPlan) -> list[float]:
    """When each user arrives: all at 0 for a burst, evenly over the ramp otherwise."""
    if plan.arrival == "burst" or plan.users == 1:
        return [0.0] * plan.users
    step = plan.ramp_seconds / (plan.users - 1)
    return [i * step for i in range(plan.users)]


def population(plan: LoadPlan, policy: Policy) -> list[SimUser]:
    options = choices(policy, gpu=plan.gpu)
    if not options:
        raise ValueError("the policy entitles no group to a profile this load test can use")
    rng = random.Random(plan.seed)  # noqa: S311 (a reproducible draw, not a secret)
    return [
        SimUser(f"load-{i:05d}", rng.choice(options), at)
        for i, at in enumerate(arrival_times(plan))
    ]


# -- one simulated user --------------------------------------------------------
def simulate(hub_url: str, user: SimUser, plan: LoadPlan, t0: float) -> UserResult:
    result = UserResult(user.name, user.choice.profile, user.choice.region)
    time.sleep(max(0.0, t0 + user.arrives - time.monotonic()))
    result.started_at = time.monotonic() - t0
    try:
        _session(hub_url, user, plan, result)
    except requests.RequestException as exc:
        result.outcome, result.detail = "error", f"{type(exc).__name__}: {exc}"
    return result


def _session(hub_url: str, user: SimUser, plan: LoadPlan, result: UserResult) -> None:
    began = time.monotonic()
    browser, landed = login_via_provider(hub_url, user.name)
    result.login_seconds = time.monotonic() - began
    if landed.status_code != 200:
        result.outcome, result.detail = "error", f"login answered {landed.status_code}"
        return
    api = f"{hub_url}/hub/api"
    # A token for the scripted part, made with the browser's session (JupyterHub
    # wants the XSRF cookie's value back in a header for that).
    browser.get(f"{hub_url}/hub/home", timeout=30)
    xsrf = {"X-XSRFToken": browser.cookies.get("_xsrf", "")}
    made = browser.post(f"{api}/users/{user.name}/tokens", json={}, headers=xsrf, timeout=30)
    made.raise_for_status()
    auth = {"Authorization": f"token {made.json()['token']}"}
    options = {"profile": user.choice.profile, "region": user.choice.region}
    asked = time.monotonic()
    spawned = requests.post(
        f"{api}/users/{user.name}/server", json=options, headers=auth, timeout=60
    )
    if spawned.status_code == 403:
        result.outcome, result.detail = "refused", _message(spawned)
        return
    if spawned.status_code not in (201, 202):
        result.outcome, result.detail = "failed", f"{spawned.status_code}: {_message(spawned)}"
        return
    result.outcome, result.detail = _wait_ready(api, user.name, auth, plan.ready_timeout)
    if result.outcome != "ready":
        return
    result.ready_seconds = time.monotonic() - asked
    status = requests.get(f"{hub_url}/user/{user.name}/api/status", headers=auth, timeout=30)
    result.status_code = status.status_code
    if status.status_code != 200:
        result.outcome, result.detail = "failed", f"api/status answered {status.status_code}"
    time.sleep(plan.idle_seconds)
    stopped = requests.delete(f"{api}/users/{user.name}/server", headers=auth, timeout=60)
    if stopped.status_code not in (202, 204):
        result.outcome, result.detail = "failed", f"stop answered {stopped.status_code}"
        return
    _wait_stopped(api, user.name, auth, plan.ready_timeout)


def _wait_ready(api: str, name: str, auth: dict[str, str], timeout: float) -> tuple[Outcome, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = requests.get(f"{api}/users/{name}", headers=auth, timeout=30).json()
        server = (model.get("servers") or {}).get("")
        if server and server.get("ready"):
            return "ready", ""
        if not server and not model.get("pending"):
            # The spawn ended without a server: the hub kept why in the progress stream.
            return "failed", _last_progress(api, name, auth)
        time.sleep(0.5)
    return "timeout", f"not ready after {timeout:g} s"


def _wait_stopped(api: str, name: str, auth: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = requests.get(f"{api}/users/{name}", headers=auth, timeout=30).json()
        if not model.get("servers") and not model.get("pending"):
            return
        time.sleep(0.5)


def _last_progress(api: str, name: str, auth: dict[str, str]) -> str:
    with (
        contextlib.suppress(requests.RequestException),
        requests.get(
            f"{api}/users/{name}/server/progress", headers=auth, stream=True, timeout=10
        ) as r,
    ):
        last = ""
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                last = json.loads(line[5:]).get("message", "")
        return last
    return "the spawn ended without a server"


def _message(response: requests.Response) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return response.text[:200]


# -- the run -------------------------------------------------------------------
@dataclass
class Report:
    plan: LoadPlan
    results: list[UserResult]
    seconds: float
    unfinished: int = 0
    """Users the deadline cut off before they arrived or finished."""
    checks: dict[str, str] = field(default_factory=dict)

    def outcomes(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results)

    def percentile(self, q: float) -> float | None:
        times = sorted(r.ready_seconds for r in self.results if r.ready_seconds is not None)
        if not times:
            return None
        if len(times) == 1:
            return times[0]
        return statistics.quantiles(times, n=100, method="inclusive")[round(q) - 1]

    def markdown(self) -> str:
        counts = self.outcomes()
        rows = [
            ("users", str(len(self.results))),
            ("concurrency", str(self.plan.concurrency)),
            ("arrival", f"{self.plan.arrival} ({self.plan.ramp_seconds:g} s)"),
            ("ready", str(counts["ready"])),
            ("failed", str(counts["failed"] + counts["timeout"] + counts["error"])),
            ("refused by policy", str(counts["refused"])),
            ("cut off by the deadline", str(self.unfinished)),
            *[(f"time to ready p{q}", _seconds(self.percentile(q))) for q in (50, 95, 99)],
            ("wall time", f"{self.seconds:.1f} s"),
            *self.checks.items(),
        ]
        lines = ["| measure | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in rows]
        failures = [r for r in self.results if r.outcome not in ("ready", "refused")]
        if failures:
            lines += ["", "First failures:", ""]
            lines += [f"- {r.name}: {r.outcome}: {r.detail}" for r in failures[:10]]
        return "\n".join(lines) + "\n"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def run(hub_url: str, users: Sequence[SimUser], plan: LoadPlan) -> Report:
    """Run ``users`` against the hub at ``hub_url``; bounded by ``plan.deadline_seconds``."""
    t0 = time.monotonic()
    results: list[UserResult] = []
    pool = ThreadPoolExecutor(plan.concurrency, thread_name_prefix="simuser")
    futures = [pool.submit(simulate, hub_url, u, plan, t0) for u in users]
    deadline = t0 + plan.deadline_seconds
    unfinished = 0
    for future in futures:
        try:
            results.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
        except TimeoutError:
            unfinished += 1
    # Past the deadline, users not yet started never start; those mid-way are left
    # to finish on their own (their threads end with their HTTP timeouts).
    pool.shutdown(wait=False, cancel_futures=True)
    return Report(plan, results, time.monotonic() - t0, unfinished)


# -- a hub to load ---------------------------------------------------------------
class LoadEnvironment(contextlib.AbstractContextManager["LoadEnvironment"]):
    """The sandbox's system, sized for load: OIDC provider with the simulated users,
    emulated Kubernetes with light pods, and the real hub, proxy, spawner,
    authenticator and audit trail (SQLite) under ``state``. ``extra_config`` is
    given the running cluster and returns hub configuration to append."""

    def __init__(
        self,
        users: Sequence[SimUser],
        state: Path,
        *,
        policy: Path = ROOT / "examples" / "policy.yaml",
        nodes: Path = ROOT / "sandbox" / "nodes.yaml",
        extra_config: Callable[[Cluster], str] | None = None,
    ) -> None:
        self.users, self.state, self.policy, self.nodes = users, state, policy, nodes
        self.extra_config = extra_config
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> LoadEnvironment:
        from sovereign_hub.sandbox.run import hub_config

        self.state.mkdir(parents=True, exist_ok=True)
        key = self.state / "audit-hmac-key"
        key.write_text(secrets.token_hex(32))
        key.chmod(0o600)
        try:
            self.provider = OidcProvider([u.claims() for u in self.users], self.state / "oidc.log")
            self._stack.callback(self.provider.stop)
            self.cluster = self._stack.enter_context(
                Cluster(load_inventory(self.nodes), self.state / "kube", light_pods=True)
            )
            port = free_port()
            config = hub_config(
                issuer=self.provider.issuer,
                port=port,
                policy=self.policy,
                cluster=self.cluster,
                state=self.state,
            )
            env = {
                "KUBECONFIG": str(self.cluster.kubeconfig),
                "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
            }
            if self.extra_config is not None:
                # After the sandbox's: what it sets last wins (e.g. another spawner_class).
                config += self.extra_config(self.cluster)
            self.hub = Hub(self.state / "hub", config, env=env, port=port)
            self._stack.callback(self.hub.stop)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def audit_store(self) -> Path:
        return self.state / "audit.sqlite"

    def running_servers(self) -> int:
        users = self.hub.api("GET", "/users?state=active").json()
        return sum(len(u.get("servers") or {}) for u in users)

    def audit_events(self) -> Counter[str]:
        """How many events of each type the run's audit store holds (``sovhub audit query``)."""
        sovhub = Path(sys.executable).with_name("sovhub")
        listed = subprocess.run(  # noqa: S603 (our own sovhub, fixed arguments)
            [str(sovhub), "audit", "query", str(self.audit_store), "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        records = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
        # A record's family is its schema's $id minus the version: …/server-started/v1.
        return Counter(r["schema"].rstrip("/").split("/")[-2] for r in records)

    def verify_audit(self) -> subprocess.CompletedProcess[str]:
        """``sovhub audit verify`` on the run's store, as an auditor would run it."""
        sovhub = Path(sys.executable).with_name("sovhub")
        return subprocess.run(  # noqa: S603 (our own sovhub, fixed arguments)
            [str(sovhub), "audit", "verify", str(self.audit_store)],
            env={
                **os.environ,
                "SOVEREIGN_AUDIT_HMAC_KEY": (self.state / "audit-hmac-key").read_text().strip(),
            },
            capture_output=True,
            text=True,
            timeout=120,
        )


def add_plan_arguments(parser: argparse.ArgumentParser, *, users: int, ramp_seconds: float) -> None:
    """The load's shape on a command line (this module's and the side-by-side benchmark's)."""
    parser.add_argument("--users", type=int, default=users)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--arrival", choices=("ramp", "burst"), default="ramp")
    parser.add_argument("--ramp-seconds", type=float, default=ramp_seconds)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--deadline-seconds", type=float, default=1800.0)


def plan_from(args: argparse.Namespace) -> LoadPlan:
    return LoadPlan(
        users=args.users,
        concurrency=args.concurrency,
        arrival=args.arrival,
        ramp_seconds=args.ramp_seconds,
        idle_seconds=args.idle_seconds,
        deadline_seconds=args.deadline_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sovereign_hub.loadtest", description=__doc__)
    add_plan_arguments(parser, users=100, ramp_seconds=30.0)
    parser.add_argument("--json", help="also write every user's result to this file")
    args = parser.parse_args(argv)
    plan = plan_from(args)
    users = population(plan, load_policy(ROOT / "examples" / "policy.yaml").policy)
    with (
        tempfile.TemporaryDirectory(prefix="sovhub-load-") as tmp,
        LoadEnvironment(users, Path(tmp)) as env,
    ):
        report = run(env.hub.url, users, plan)
        report.checks["servers running at the end"] = str(env.running_servers())
        env.hub.stop()
        verified = env.verify_audit()
        report.checks["audit verify"] = "clean" if verified.returncode == 0 else verified.stdout
        print(report.markdown())
        if args.json:
            Path(args.json).write_text(json.dumps([asdict(r) for r in report.results], indent=1))
    counts = report.outcomes()
    return 0 if counts["ready"] + counts["refused"] == len(users) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
