"""The audit viewer for security teams, a JupyterHub service (``/services/audit/``)."""

from __future__ import annotations

from typing import Any

SCOPE = "custom:audit:read"


def add_audit_viewer(
    c: Any,
    *,
    store: str,
    hmac_key_file: str,
    spool_dir: str,
    groups: list[str],
    port: int,
    name: str = "audit",
    password_file: str = "",
    url_host: str = "127.0.0.1",
    bind_ip: str = "",
) -> None:
    """Run the viewer as a hub-managed service that only ``groups`` can open.

    ``password_file`` holds the PostgreSQL password when ``store`` needs one;
    ``url_host`` is where the proxy reaches the service (in a cluster, the hub
    Service's name) and ``bind_ip`` the address the viewer listens on (empty:
    ``url_host``). They differ in a pod: a Service name resolves to a
    ClusterIP that no pod can bind, so there the viewer listens on 0.0.0.0.
    Defines the ``custom:audit:read`` scope, a role granting it to ``groups``,
    and lets every user complete the service's OAuth, so that someone
    without the scope sees the viewer's own refusal page rather than a bare
    hub error.
    """
    import sys

    c.JupyterHub.custom_scopes = {
        **dict(c.JupyterHub.get("custom_scopes", {})),
        SCOPE: {"description": "Read the audit trail in the audit viewer."},
    }
    services = list(c.JupyterHub.get("services", []))
    services.append(
        {
            "name": name,
            "url": f"http://{url_host}:{port}",
            "command": [sys.executable, "-m", "sovereign_hub.audit.viewer"],
            "environment": {
                "SOVEREIGN_AUDIT_STORE": store,
                "SOVEREIGN_AUDIT_HMAC_KEY_FILE": hmac_key_file,
                "SOVEREIGN_AUDIT_VIEWER_SPOOL": spool_dir,
                "SOVEREIGN_AUDIT_STORE_PASSWORD_FILE": password_file,
                "SOVEREIGN_AUDIT_VIEWER_IP": bind_ip,
            },
            "oauth_client_allowed_scopes": [SCOPE],
            "oauth_no_confirm": True,
            "display": True,
        }
    )
    c.JupyterHub.services = services
    roles = [r for r in c.JupyterHub.get("load_roles", []) if r.get("name") != "user"]
    roles += [
        {"name": "audit-readers", "scopes": [SCOPE], "groups": list(groups)},
        {"name": "user", "scopes": ["self", f"access:services!service={name}"]},
    ]
    c.JupyterHub.load_roles = roles
