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
fit on a small machine. ``python -m sovereign_hub.sandbox.loadtest --help``.

Modules, one job each: :mod:`.plan` (the load's shape), :mod:`.user` (one simulated
user), :mod:`.driver` (many of them, bounded), :mod:`.report` (what was measured),
:mod:`.environment` (a hub to load) and ``__main__`` (the command line).
"""

from __future__ import annotations

from .driver import run, run_apart
from .environment import LoadEnvironment
from .plan import (
    Arrival,
    Choice,
    LoadPlan,
    SimUser,
    add_plan_arguments,
    arrival_times,
    choices,
    plan_from,
    population,
)
from .report import Report
from .user import Outcome, UserResult, simulate

__all__ = [
    "Arrival",
    "Choice",
    "LoadEnvironment",
    "LoadPlan",
    "Outcome",
    "Report",
    "SimUser",
    "UserResult",
    "add_plan_arguments",
    "arrival_times",
    "choices",
    "plan_from",
    "population",
    "run",
    "run_apart",
    "simulate",
]
