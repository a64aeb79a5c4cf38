"""A hub to load: the sandbox's system (OIDC provider, emulated Kubernetes with light pods,
the real hub and audit trail), and what a run checks afterwards."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sovereign_hub.policy import load_policy
from sovereign_hub.sandbox.hubprocess import Hub, free_port
from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.sandbox.kube.inventory import Inventory, load_inventory
from sovereign_hub.sandbox.oidc import OidcProvider
from sovereign_hub.spawner.state import read_state

from .nodes import sized_inventory
from .plan import SimUser

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger(__name__)


class LoadEnvironment(contextlib.AbstractContextManager["LoadEnvironment"]):
    """The sandbox's system, sized for load: OIDC provider with the simulated users,
    emulated Kubernetes with light pods, and the real hub, proxy, spawner,
    authenticator and audit trail (SQLite) under ``state``. ``extra_config`` is
    given the running cluster and returns hub configuration to append. With
    ``concurrency``, the node inventory grows until that many of the users' servers
    fit at once (:func:`~.nodes.sized_inventory`); it is written to
    ``state/nodes.yaml``."""

    def __init__(
        self,
        users: Sequence[SimUser],
        state: Path,
        *,
        policy: Path = ROOT / "examples" / "policy.yaml",
        nodes: Path = ROOT / "sandbox" / "nodes.yaml",
        extra_config: Callable[[Cluster], str] | None = None,
        concurrency: int | None = None,
        light_pods: bool = True,
        hub_db: str = "",
    ) -> None:
        self.users, self.state, self.policy, self.nodes = users, state, policy, nodes
        # Off: each server is a real JupyterLab process from .venv-notebook, as in the
        # sandbox (a few dozen at most on two cores: benchmarks/bench_burst.py).
        self.light_pods = light_pods
        self.extra_config = extra_config
        self.hub_db = hub_db
        """JupyterHub's own database: a PostgreSQL URL, or empty for SQLite in ``state``."""
        self.concurrency = concurrency
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
            self.inventory = self._inventory()
            self.cluster = self._stack.enter_context(
                Cluster(self.inventory, self.state / "kube", light_pods=self.light_pods)
            )
            port = free_port()
            config = hub_config(
                issuer=self.provider.issuer,
                port=port,
                policy=self.policy,
                cluster=self.cluster,
                state=self.state,
                hub_db=self.hub_db,
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

    def _inventory(self) -> Inventory:
        inventory = load_inventory(self.nodes)
        if self.concurrency is None:
            return inventory
        policy = load_policy(self.policy).policy
        inventory = sized_inventory(inventory, self.users, self.concurrency, policy)
        # Kept with the run's state, so a reader sees the cluster the figures came from.
        (self.state / "nodes.yaml").write_text(
            yaml.safe_dump(
                inventory.model_dump(mode="json", exclude_defaults=True), sort_keys=False
            )
        )
        return inventory

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def audit_store(self) -> Path:
        return self.state / "audit.sqlite"

    def active_users(self, timeout: float = 30) -> list[dict[str, Any]]:
        """Every user with a running or starting server, page by page (the REST API answers
        at most 200 users a request)."""
        users: list[dict[str, Any]] = []
        while True:
            page = self.hub.api(
                "GET", f"/users?state=active&offset={len(users)}&limit=200", timeout=timeout
            ).json()
            users += page
            if len(page) < 200:
                return users

    def running_servers(self, timeout: float = 30) -> int:
        return sum(len(u.get("servers") or {}) for u in self.active_users(timeout))

    def gpu_ledger(self, timeout: float = 30) -> dict[str, int]:
        """The GPUs the hub's quota ledger holds per group (``sovereign_gpu_held`` on
        ``/hub/metrics``); empty for a hub without one (stock KubeSpawner)."""
        response = requests.get(
            f"{self.hub.url}/hub/metrics",
            headers={"Authorization": f"token {self.hub.token}"},
            timeout=timeout,
        )
        response.raise_for_status()
        return {
            sample.labels["quota_group"]: int(sample.value)
            for family in text_string_to_metric_families(response.text)
            if family.name == "sovereign_gpu_held"
            for sample in family.samples
        }

    def server_gpus(self, timeout: float = 120) -> dict[str, int]:
        """The GPUs of the hub's servers that are running or starting, per quota group, as
        their saved state records them (Sovereign Hub's spawner only)."""
        totals: dict[str, int] = {}
        for user in self.active_users(timeout):
            for server in (user.get("servers") or {}).values():
                _, allocation = read_state(server.get("state") or {}, log, user["name"])
                if allocation is not None and allocation.gpus:
                    group = allocation.quota_group or "(none)"
                    totals[group] = totals.get(group, 0) + allocation.gpus
        return totals

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
