# Sovereign Hub's jupyterhub_config.py, generated from the chart's values.
#
# The chart mounts this file with values.yaml beside it (only what the hub
# needs, never a secret: those come from the environment and mounted files).
# `hub.extraConfig` snippets run last, in key order, as in Zero to JupyterHub.
import os
from pathlib import Path

import yaml

HERE = Path(os.environ.get("SOVEREIGN_HUB_CONFIG_DIR", "/usr/local/etc/sovereign-hub"))
STATE = Path(os.environ.get("SOVEREIGN_HUB_STATE_DIR", "/srv/jupyterhub"))
values = yaml.safe_load((HERE / "values.yaml").read_text())
c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

SECRETS = Path(os.environ.get("SOVEREIGN_HUB_SECRETS_DIR", "/etc/sovereign-hub/hub-secrets"))


def secret(name: str, directory: Path = SECRETS) -> str:
    """A secret from its mounted file; empty when it is not mounted."""
    path = directory / name
    return path.read_text().strip() if path.exists() else ""


names = values["names"]
namespace = values["release"]["namespace"]
hub_values = values["hub"]

# Hub and proxy run in their own pods; the proxy is not the hub's child.
c.JupyterHub.hub_bind_url = "http://:8081"
c.JupyterHub.hub_connect_url = f"http://{names['hub']}:8081"
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = f"http://{names['proxyApi']}:8001"
c.JupyterHub.cleanup_servers = False  # servers outlive a hub restart
# Without the mounted files (a local run), JupyterHub reads its usual
# environment variables instead: JPY_COOKIE_SECRET, JUPYTERHUB_CRYPT_KEY,
# CONFIGPROXY_AUTH_TOKEN.
if cookie := secret("cookie-secret"):
    c.JupyterHub.cookie_secret = bytes.fromhex(cookie)
if crypt_key := secret("crypt-key"):
    c.CryptKeeper.keys = [bytes.fromhex(crypt_key)]
if proxy_token := secret("proxy-token"):
    c.ConfigurableHTTPProxy.auth_token = proxy_token
c.JupyterHub.authenticate_prometheus = hub_values["metrics"]["authenticatePrometheus"]

db = hub_values["db"]
if db["type"] == "postgresql":
    # psycopg reads PGPASSWORD, set from the Secret the values name.
    c.JupyterHub.db_url = db["url"].replace("postgresql://", "postgresql+psycopg://", 1)
else:
    c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"

# The Sovereign spawner: the policy decides image, resources, GPUs and region.
singleuser = values["singleuser"]
c.JupyterHub.spawner_class = "sovereign"
POLICY = os.environ.get("SOVEREIGN_POLICY_FILE", "/etc/sovereign-hub/policy/policy.yaml")
c.SovereignSpawner.policy_file = POLICY
c.SovereignSpawner.namespace = namespace
c.SovereignSpawner.home_mount_path = singleuser["homeMountPath"]
c.SovereignSpawner.home_size = singleuser["homeSize"]
c.SovereignSpawner.start_timeout = singleuser["startTimeout"]
c.SovereignSpawner.common_labels = {
    **values["labels"],
    "app.kubernetes.io/managed-by": "kubespawner",
    **singleuser["extraLabels"],
}

# Company SSO through OpenID Connect.
auth = values["auth"]
host = (values["ingressHosts"] or [""])[0]
c.JupyterHub.authenticator_class = "sovereign"
c.SovereignAuthenticator.issuer = auth["issuer"]
c.SovereignAuthenticator.client_id = auth["clientId"]
c.SovereignAuthenticator.client_secret = secret(
    "client-secret", Path(os.environ.get("SOVEREIGN_OIDC_SECRET_DIR", "/etc/sovereign-hub/oidc"))
)
c.SovereignAuthenticator.oauth_callback_url = auth["callbackUrl"] or (
    f"https://{host}/hub/oauth_callback" if host else ""
)
c.SovereignAuthenticator.scope = auth["scopes"]
c.SovereignAuthenticator.username_claim = auth["usernameClaim"]
c.SovereignAuthenticator.groups_claim = auth["groupsClaim"]
c.SovereignAuthenticator.attribute_claims = auth["attributeClaims"]
c.SovereignAuthenticator.admin_groups = set(auth["adminGroups"])
c.SovereignAuthenticator.auditor_groups = set(auth["auditorGroups"])
c.SovereignAuthenticator.policy_file = POLICY
c.SovereignAuthenticator.stop_unentitled_servers = auth["stopUnentitledServers"]
c.SovereignAuthenticator.enable_auth_state = True

# The audit trail: spool on the hub's volume, key from its Secret.
audit = values["audit"]
c.AuditTrail.spool_dir = str(STATE / "audit-spool")
c.AuditTrail.hmac_key_file = os.environ.get(
    "SOVEREIGN_AUDIT_HMAC_KEY_FILE", "/etc/sovereign-hub/audit/hmac/key"
)
c.AuditTrail.on_spool_full = audit["onSpoolFull"]
c.AuditTrail.spool_limit_bytes = audit["spoolLimitBytes"]
c.AuditTrail.hub_instance = values["release"]["fullname"]
c.AuditTrail.sinks = audit["sinks"]
c.AuditTrail.shipping = "process"  # delivery never competes with the hub for the GIL

# Idle culling, as a hub-managed service with only the scopes it needs.
cull = values["cull"]
if cull["enabled"]:
    import sys

    command = [
        sys.executable, "-m", "jupyterhub_idle_culler",
        f"--timeout={cull['timeout']}", f"--cull-every={cull['every']}",
        f"--concurrency={cull['concurrency']}",
    ]  # fmt: skip
    if cull["maxAge"]:
        command.append(f"--max-age={cull['maxAge']}")
    c.JupyterHub.services = [{"name": "idle-culler", "command": command}]
    c.JupyterHub.load_roles = [
        {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        }
    ]

# The audit viewer for the auditor groups, reading the first database sink.
databases = [s for s in audit["sinks"] if s["type"] in ("sqlite", "postgresql")]
if auth["auditorGroups"] and databases:
    from sovereign_hub.audit.viewer import add_audit_viewer

    first = databases[0]
    add_audit_viewer(
        c,
        store=first.get("path") or first["dsn"],
        password_file=first.get("password_file", ""),
        hmac_key_file=c.AuditTrail.hmac_key_file,
        spool_dir=str(STATE / "audit-viewer-spool"),
        groups=auth["auditorGroups"],
        port=10101,
        url_host=names["hub"],
    )

for _name, snippet in sorted(hub_values["extraConfig"].items()):
    exec(compile(snippet, f"hub.extraConfig.{_name}", "exec"))  # noqa: S102 - the admin's own config

# Last: the trail also hooks the request log and event log set above.
from sovereign_hub.audit import hub_reporter  # noqa: E402

c.SovereignSpawner.reporter = c.SovereignAuthenticator.reporter = hub_reporter(c)
