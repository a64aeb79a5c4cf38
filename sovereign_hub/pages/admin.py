"""The admin page's extension: every user's pins, region and GPUs, and the GPU ledger.

JupyterHub's admin panel is a React app that reads the REST API; it cannot
show what only the spawner knows. Sovereign Hub's ``admin.html`` extends
that page with a server-rendered section below the panel, built here from
the spawners' persisted state and the hub process's GPU ledger
(:data:`sovereign_hub.spawner.quota.SHARED`). Presentation only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sovereign_hub.policy import Pin, Policy, PolicyError, Usage, cached_policy
from sovereign_hub.spawner import quota
from sovereign_hub.spawner.state import Allocation

from .status import spawner_facts


@dataclass(frozen=True, slots=True)
class AdminRow:
    user: str
    server: str
    running: bool
    profile: str
    region: str
    gpus: int
    quota_group: str
    node: str
    pins: tuple[str, ...]
    """``channel version (since YYYY-MM-DD)`` per pinned channel."""


@dataclass(frozen=True, slots=True)
class LedgerRow:
    group: str
    quota: int
    held: int
    holders: str
    """``user: n`` for each user holding GPUs in the group."""


def admin_row(
    user: str, server: str, running: bool, pins: Mapping[str, Pin], allocation: Allocation | None
) -> AdminRow:
    live = allocation if running else None
    return AdminRow(
        user=user,
        server=server,
        running=running,
        profile=live.profile if live else "",
        region=live.region if live else "",
        gpus=live.gpus if live else 0,
        quota_group=(live.quota_group or "") if live else "",
        node=(live.node or "") if live else "",
        pins=tuple(
            f"{channel} {pin.version} (since {pin.pinned_at.date().isoformat()})"
            for channel, pin in sorted(pins.items())
        ),
    )


def ledger_rows(usage: Usage, policy: Policy) -> list[LedgerRow]:
    """Every group with a GPU quota or a hold, in the policy's order, then any unknown group."""
    names = [g for g, rules in policy.groups.items() if rules.gpu_quota or g in usage.gpus]
    names += sorted(set(usage.gpus) - set(names))
    rows = []
    for group in names:
        holders = usage.gpus.get(group, {})
        rules = policy.groups.get(group)
        rows.append(
            LedgerRow(
                group=group,
                quota=rules.gpu_quota if rules else 0,
                held=usage.group_total(group),
                holders=", ".join(f"{u}: {n}" for u, n in sorted(holders.items()) if n),
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class AdminView:
    """``JupyterHub.template_vars`` hook: the admin section, built only when a template asks
    (``sovereign_admin()``), and only for an admin."""

    policy_file: str

    def __call__(self, user: Any) -> Callable[[], dict[str, Any] | None]:
        return functools.partial(self.view, user)

    def view(self, user: Any) -> dict[str, Any] | None:
        if user is None or not getattr(user, "admin", False):
            return None
        from jupyterhub import orm

        users = user.settings["users"]
        rows = []
        for orm_user in user.db.query(orm.User).order_by(orm.User.name):
            member = users[orm_user]
            for spawner in member.all_spawners():
                pins, allocation, running, _chosen = spawner_facts(member, spawner)
                rows.append(admin_row(member.name, spawner.name, running, pins, allocation))
        try:
            policy = cached_policy(self.policy_file).policy
        except PolicyError as exc:
            return {"rows": rows, "ledger": [], "policy_error": str(exc)}
        # Looked up now, not held: traitlets deep-copies config values, ledger and all.
        return {"rows": rows, "ledger": ledger_rows(quota.SHARED.usage(), policy)}
