"""Configuration shared by the tests that start a real hub with the Sovereign spawner on the
emulated cluster (the fuzz, fault and storm hubs)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sovereign_hub.sandbox.kube.apiserver import ApiServer
from sovereign_hub.sandbox.kube.cluster import Cluster

PENDING = {"cmd": ["sleep", "900"], "args": [], "start_timeout": 900, "http_timeout": 900}
"""A server that never answers: accepted spawns stay pending (holding their pod), which is
cheap; the hub waits long enough that no spawn ends while a test runs."""


def sovereign_hub_config(kube: Cluster, policy: Path, **settings: Any) -> list[str]:
    """Config lines for a hub whose users log in by name (JupyterHub's dummy authenticator)
    and spawn with the Sovereign spawner on ``kube`` under ``policy``, with the governed
    sharing installed as the chart's config installs it
    (:func:`sovereign_hub.hubconfig.enable_sharing`: the share handlers, and the user
    role's sharing scopes when the policy lets some group share).

    ``settings`` are further ``SovereignSpawner`` traits, overriding :data:`PENDING`.
    Add :func:`audit_config` last for the audit trail, as the chart does.
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
        "from sovereign_hub.hubconfig import enable_sharing",
        "enable_sharing(c)",
    ]


def audit_config(state: Path, instance: str = "hub-test") -> list[str]:
    """Config lines, last in a hub's config as in the chart's (they hook what came before):
    the audit trail into a SQLite store (``state/audit.sqlite``, spool ``state/spool``, a new
    HMAC key in ``state/audit-hmac-key``), reporting the spawner's and the sharing's events."""
    state.mkdir(parents=True, exist_ok=True)
    key = state / "audit-hmac-key"
    key.write_text(secrets.token_hex(32))
    trail = {
        "spool_dir": str(state / "spool"),
        "sinks": [{"type": "sqlite", "path": str(state / "audit.sqlite")}],
        "hmac_key_file": str(key),
        "hub_instance": instance,
    }
    return [
        *(f"c.AuditTrail.{k} = {v!r}" for k, v in trail.items()),
        "from sovereign_hub.hubconfig import attach_audit",
        "attach_audit(c)",
    ]


REASONS = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


def refuse_pod_creates(monkeypatch: pytest.MonkeyPatch, answers: list[int]) -> list[int]:
    """Make each emulated API server started from now on (Kubernetes is emulated) answer the
    next pod creates with ``answers``, in order, as a real one does when it is overloaded
    (429 with Retry-After) or failing (5xx); then serve them. Returns the statuses sent."""
    serve = ApiServer.app
    sent: list[int] = []

    @web.middleware
    async def refuse(request: web.Request, handler: Any) -> web.StreamResponse:
        creates_a_pod = re.fullmatch(r"/api/v1/namespaces/[^/]+/pods", request.path)
        if request.method == "POST" and creates_a_pod and answers:
            status = answers.pop(0)
            sent.append(status)
            body = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"the server could not serve the request ({REASONS[status]})",
                "reason": REASONS[status],
                "code": status,
            }
            return web.json_response(body, status=status, headers={"Retry-After": "1"})
        return await handler(request)

    def app(self: ApiServer) -> web.Application:
        application = serve(self)
        application.middlewares.insert(0, refuse)
        return application

    monkeypatch.setattr(ApiServer, "app", app)
    return sent
