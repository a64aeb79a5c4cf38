"""The load's shape: how many simulated users arrive, how, what each asks for (drawn from
the policy's entitlements), and the same shape on a command line."""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, field
from typing import Literal

from sovereign_hub.policy import Policy

from .retry import RetryPolicy

Arrival = Literal["ramp", "burst"]
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
    answer_seconds: float = 60.0
    """How long a simulated browser waits for the hub's answer to a spawn request: 60 s,
    the read timeout of an ingress in front of the hub (ingress-nginx's default). Past it
    the user follows the server from the hub's model, and the spawn counts as answered
    late (``UserResult.answered_late``), not failed, if the server comes up."""
    deadline_seconds: float = 600.0
    gpu_share: float = 0.0
    """The share of users (0 to 1) who draw a GPU profile their group is entitled to (they
    may wait in the GPU queue); the others draw CPU profiles. 0: CPU profiles only."""
    seed: int = 0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """What a user does when the hub answers a spawn request with 429."""
    spawn_together: bool = False
    """Users log in as they arrive; the spawning ones then all ask for a server at once,
    when every user (spawning or not) has logged in: concurrent spawns that the login's
    pace (the identity provider's) does not spread out. Needs ``concurrency`` at least
    ``spawners`` (waiting spawners hold their threads: leave more for the logins)."""
    spawners: int | None = None
    """How many of the users ask for a server (spread evenly over the arrivals, the last
    arrival always one of them); the others only log in and stay logged in, as people
    with the hub's home page open do. None: every user spawns. "5,000 users logged in,
    1,000 spawning at once" is ``users=5000, spawners=1000, spawn_together=True``."""

    def __post_init__(self) -> None:
        if self.users < 1 or self.concurrency < 1:
            raise ValueError(f"users and concurrency must be at least 1, not {self}")
        if self.spawners is not None and not 1 <= self.spawners <= self.users:
            raise ValueError(
                f"spawners must be between 1 and users ({self.users}), not {self.spawners}"
            )
        if self.spawn_together and self.concurrency < self.spawning:
            raise ValueError(
                f"spawn_together needs concurrency >= spawners ({self.concurrency} < "
                f"{self.spawning}): every spawning user waits for the others"
            )
        if not 0 <= self.gpu_share <= 1:
            raise ValueError(f"gpu_share must be between 0 and 1, not {self.gpu_share}")
        if self.answer_seconds <= 0:
            raise ValueError(f"answer_seconds must be positive, not {self.answer_seconds}")
        if self.arrival not in ("ramp", "burst"):
            raise ValueError(f"arrival {self.arrival!r} is not 'ramp' or 'burst'")

    @property
    def spawning(self) -> int:
        """How many users ask for a server."""
        return self.users if self.spawners is None else self.spawners

    def spawns(self, index: int) -> bool:
        """Whether the user arriving ``index``-th (from 0) asks for a server: one in each
        run of ``users / spawners`` arrivals, the run's last, so the spawners are spread
        over the whole arrival (the last to arrive is one)."""
        n = self.spawning
        return (index + 1) * n // self.users > index * n // self.users


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
    spawns: bool = True
    """False: the user logs in and stays logged in, without a server."""

    def claims(self) -> dict[str, object]:
        return {
            "sub": self.name,
            "preferred_username": self.name,
            "groups": [self.choice.group],
            "country": COUNTRY.get(self.choice.region, "DE"),
        }


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
    options = choices(policy)
    if not options:
        raise ValueError("the policy entitles no group to a profile this load test can use")
    gpu_options = [c for c in choices(policy, gpu=True) if policy.profiles[c.profile].gpu]
    if plan.gpu_share and not gpu_options:
        raise ValueError("gpu_share is set but the policy entitles no group to a GPU profile")
    rng = random.Random(plan.seed)  # noqa: S311 (a reproducible draw, not a secret)

    def draw() -> Choice:
        # Without GPU users, the draws are the ones a CPU-only plan always made.
        if plan.gpu_share and rng.random() < plan.gpu_share:
            return rng.choice(gpu_options)
        return rng.choice(options)

    return [
        SimUser(f"load-{i:05d}", draw(), at, plan.spawns(i))
        for i, at in enumerate(arrival_times(plan))
    ]


def add_plan_arguments(parser: argparse.ArgumentParser, *, users: int, ramp_seconds: float) -> None:
    """The load's shape on a command line (this module's and the side-by-side benchmark's)."""
    parser.add_argument("--users", type=int, default=users)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--arrival", choices=("ramp", "burst"), default="ramp")
    parser.add_argument("--ramp-seconds", type=float, default=ramp_seconds)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--deadline-seconds", type=float, default=1800.0)
    parser.add_argument(
        "--spawn-together",
        action="store_true",
        help="log every user in as they arrive, then spawn all at once (concurrency >= spawners)",
    )
    parser.add_argument(
        "--spawners",
        type=int,
        help="how many of the users ask for a server, spread evenly over the arrivals; "
        "the others log in and stay logged in (default: all)",
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=LoadPlan().ready_timeout,
        help="how long a user waits for its server to be ready (keep above start_timeout)",
    )
    parser.add_argument(
        "--answer-seconds",
        type=float,
        default=LoadPlan().answer_seconds,
        help="how long a user waits for the hub to answer a spawn request (an ingress's "
        "read timeout) before following the server from the hub's model; such spawns are "
        "counted as answered late",
    )
    parser.add_argument(
        "--gpu-share",
        type=float,
        default=0.0,
        help="the share of users (0 to 1) who ask for a GPU profile (they may wait in the "
        "GPU queue); default 0, CPU profiles only",
    )
    parser.add_argument(
        "--spawn-attempts",
        type=int,
        default=RetryPolicy().attempts,
        help="spawn requests (logins) per user in all when the hub answers 429 (503): "
        "Retry-After honoured",
    )
    parser.add_argument(
        "--retry-cap-seconds",
        type=float,
        default=RetryPolicy().cap_seconds,
        help="the longest wait after a 429, whatever its Retry-After says",
    )


def plan_from(args: argparse.Namespace) -> LoadPlan:
    return LoadPlan(
        users=args.users,
        concurrency=args.concurrency,
        arrival=args.arrival,
        ramp_seconds=args.ramp_seconds,
        idle_seconds=args.idle_seconds,
        deadline_seconds=args.deadline_seconds,
        ready_timeout=args.ready_timeout,
        answer_seconds=args.answer_seconds,
        spawn_together=args.spawn_together,
        spawners=args.spawners,
        gpu_share=args.gpu_share,
        retry=RetryPolicy(attempts=args.spawn_attempts, cap_seconds=args.retry_cap_seconds),
    )
