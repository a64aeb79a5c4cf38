"""Configuration shared by the tests that start a real hub with the Sovereign spawner on the
emulated cluster (the fuzz, fault and storm hubs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sovereign_hub.sandbox.kube.cluster import Cluster

PENDING = {"cmd": ["sleep", "900"], "args": [], "start_timeout": 900, "http_timeout": 900}
"""A server that never answers: accepted spawns stay pending (holding their pod), which is
cheap; the hub waits long enough that no spawn ends while a test runs."""


def sovereign_hub_config(kube: Cluster, policy: Path, **settings: Any) -> list[str]:
    """Config lines for a hub whose users log in by name (JupyterHub's dummy authenticator)
    and spawn with the Sovereign spawner on ``kube`` under ``policy``.

    ``settings`` are further ``SovereignSpawner`` traits, overriding :data:`PENDING`.
    """
    traits = {
        "policy_file": str(policy),
        "namespace": kube.namespace,
        "scheduler_name": kube.scheduler_name,
        **PENDING,
        **settings,
    }
    return [
        'c.JupyterHub.authenticator_class = "dummy"',
        "c.Authenticator.allow_all = True",
        'c.JupyterHub.spawner_class = "sovereign"',
        *(f"c.SovereignSpawner.{k} = {v!r}" for k, v in traits.items()),
    ]
