"""The hub's configuration from the chart's values: one tested mapping, values → traits.

The chart's ``jupyterhub_config.py`` is a few lines calling :func:`configure`
with the values Helm rendered beside it; the sandbox and the benchmarks call
it too, with a :class:`Site` that says where a local run keeps its files.
What Zero to JupyterHub does in 540 lines of glue ending in ``exec`` lives
here as small functions, each pinned by a golden test
(``tests/test_hubconfig.py``) that shows the whole resulting configuration.

``values`` has the shape of the chart's ``sh.hubValues`` helper: ``release``,
``names`` (the Services the hub reaches), ``labels``, ``hub``, ``singleuser``,
``imagePullSecrets``, ``cull``, ``auth``, ``audit`` and ``ingressHosts``.
It never holds a secret: secrets are files named by the :class:`Site`.
"""

from __future__ import annotations

import copy
import os
import runpy
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sovereign_hub import hubsqlite
from sovereign_hub.pages import TEMPLATES

VIEWER_PORT = 10101
GATEWAY_CLIENT_DIR = "/etc/sovereign-hub/gateway-client"
"""Where the chart mounts ``proxy.gatewayClient.existingSecret`` (tls.crt, tls.key, ca.crt);
``SOVEREIGN_GATEWAY_CLIENT_DIR`` moves it."""
"""The audit viewer's port in the hub's pod (the hub Service and NetworkPolicy name it)."""
METRICS_SERVICE = "metrics-scraper"
"""The hub service whose token (the hub Secret's ``metrics-token``) may read ``/hub/metrics``."""
EXTRA_CONFIG_PREFIX = "extra-config."
"""ConfigMap keys of ``hub.extraConfig`` snippets: ``extra-config.<name>.py``."""
# Sink options that only the chart reads (its NetworkPolicy), never AuditTrail.
CHART_ONLY_SINK_KEYS = ("egressTo",)


@dataclass(frozen=True)
class Site:
    """Where this hub's files are, and whether it runs in the chart's pod.

    In the pod (:meth:`pod`) the paths are the chart's mounts; each can be
    moved by an environment variable, which the tests and the pod-faithful
    harness use. A local run (:meth:`local`) keeps everything under one state
    directory, and sets its own addresses, database and proxy.
    """

    config_dir: Path
    state_dir: Path
    policy_file: Path
    hmac_key_file: Path
    hub_secrets_dir: Path
    oidc_secret_dir: Path
    db_password_file: Path
    # After the fields every caller sets, so a Site built by keyword elsewhere still works.
    signing_key_file: Path = Path("/etc/sovereign-hub/audit/signing/key.pem")
    in_pod: bool = True
    viewer_port: int = VIEWER_PORT

    @classmethod
    def pod(cls, environ: Mapping[str, str] | None = None) -> Site:
        env = os.environ if environ is None else environ

        def path(name: str, default: str) -> Path:
            return Path(env.get(name, default))

        return cls(
            config_dir=path("SOVEREIGN_HUB_CONFIG_DIR", "/usr/local/etc/sovereign-hub"),
            state_dir=path("SOVEREIGN_HUB_STATE_DIR", "/srv/jupyterhub"),
            policy_file=path("SOVEREIGN_POLICY_FILE", "/etc/sovereign-hub/policy/policy.yaml"),
            hmac_key_file=path(
                "SOVEREIGN_AUDIT_HMAC_KEY_FILE", "/etc/sovereign-hub/audit/hmac/key"
            ),
            hub_secrets_dir=path("SOVEREIGN_HUB_SECRETS_DIR", "/etc/sovereign-hub/hub-secrets"),
            oidc_secret_dir=path("SOVEREIGN_OIDC_SECRET_DIR", "/etc/sovereign-hub/oidc"),
            db_password_file=path(
                "SOVEREIGN_HUB_DB_PASSWORD_FILE", "/etc/sovereign-hub/db/password"
            ),
            signing_key_file=path(
                "SOVEREIGN_AUDIT_SIGNING_KEY_FILE", "/etc/sovereign-hub/audit/signing/key.pem"
            ),
        )

    @classmethod
    def local(
        cls, state: Path, *, policy_file: Path, viewer_port: int, hmac_key_file: Path | None = None
    ) -> Site:
        """A hub run as a local process: files under ``state``, no pod networking."""
        return cls(
            config_dir=state,
            state_dir=state,
            policy_file=policy_file,
            hmac_key_file=hmac_key_file or state / "audit-hmac-key",
            hub_secrets_dir=state / "hub-secrets",
            oidc_secret_dir=state / "oidc",
            db_password_file=state / "db-password",
            signing_key_file=state / "audit-signing-key.pem",
            in_pod=False,
            viewer_port=viewer_port,
        )


def load_values(path: Path) -> dict[str, Any]:
    """The values the chart renders beside the config file (``values.yaml``)."""
    values = yaml.safe_load(path.read_text())
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected the chart's hub values (a mapping), got {values!r}")
    return values


def read_secret(path: Path) -> str:
    """A mounted secret, stripped; empty when the file is not there."""
    return path.read_text().strip() if path.is_file() else ""


def configure(c: Any, values: Mapping[str, Any], site: Site) -> None:
    """Set the hub's traits on ``c`` (a traitlets Config) from the chart's ``values``.

    Services and roles already in ``c`` are kept; ours are appended. The audit
    trail is not started here: call :func:`attach_audit` last, after the
    admin's own configuration.
    """
    values = copy.deepcopy(dict(values))
    if site.in_pod:
        _pod_network(c, values)
        _database(c, values["hub"]["db"], site)
    _sqlite_wal(c, values["hub"].get("db", {}))
    # JupyterHub's default of 10 route updates in flight at once: at 1,000 spawns together
    # the last routes waited past its 30 s retry window and their servers were stopped.
    # (`or`: values kept from an older release with --reuse-values may carry a null.)
    c.ConfigurableHTTPProxy.concurrency = (values.get("proxy") or {}).get("apiConcurrency") or 100
    _secrets(c, site)
    _spawner(c, values, site)
    _authenticator(c, values, site)
    _audit(c, values["audit"], values["release"]["fullname"], site)
    _templates(c, values["hub"], site)
    _gateway_client(c, values)
    services: list[dict[str, Any]] = list(c.JupyterHub.get("services", []))
    roles: list[dict[str, Any]] = list(c.JupyterHub.get("load_roles", []))
    _culler(values["cull"], services, roles)
    _metrics(c, values["hub"]["metrics"], site, services, roles)
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
    _viewer(c, values, site)


def _gateway_client(c: Any, values: Mapping[str, Any]) -> None:
    # JupyterHub's own check that a new server is up goes through a region's gateway too,
    # so its HTTP client needs the same certificate as the proxy (which the chart gives its
    # own pod as command-line options).
    if not values.get("gatewayClient", {}).get("enabled"):
        return
    from sovereign_hub.gateway.hub import GatewayTLS, client_context

    folder = Path(os.environ.get("SOVEREIGN_GATEWAY_CLIENT_DIR", GATEWAY_CLIENT_DIR))
    tls = GatewayTLS(
        cert=str(folder / "tls.crt"), key=str(folder / "tls.key"), ca=str(folder / "ca.crt")
    )
    c.JupyterHubHTTPClient.connector_options = {"ssl": client_context(tls)}


def _pod_network(c: Any, values: Mapping[str, Any]) -> None:
    # Hub and proxy run in their own pods; the proxy is not the hub's child.
    names = values["names"]
    c.JupyterHub.hub_bind_url = "http://:8081"
    c.JupyterHub.hub_connect_url = f"http://{names['hub']}:8081"
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = f"http://{names['proxyApi']}:8001"
    c.JupyterHub.cleanup_servers = False  # servers outlive a hub restart


def sqlalchemy_url(url: str) -> str:
    """A ``postgresql://`` URL as JupyterHub's SQLAlchemy engine takes it: with psycopg 3,
    the driver the hub image installs."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _database(c: Any, db: Mapping[str, Any], site: Site) -> None:
    if db["type"] != "postgresql":
        c.JupyterHub.db_url = f"sqlite:///{site.state_dir / 'jupyterhub.sqlite'}"
        return
    c.JupyterHub.db_url = sqlalchemy_url(db["url"])
    # The password arrives as a file and goes to the driver alone: an
    # environment variable (PGPASSWORD) would be inherited by every child.
    if password := read_secret(site.db_password_file):
        c.JupyterHub.db_kwargs = {"connect_args": {"password": password}}


def _sqlite_wal(c: Any, db: Mapping[str, Any]) -> None:
    # A local run (the sandbox) keeps the db_url it was given, which must be set before
    # configure(); JupyterHub's default is SQLite too, and so is a bare file name (JupyterHub
    # makes it a sqlite:/// URL). A PostgreSQL URL gets no SQLite connection factory.
    url = str(c.JupyterHub.db_url) if "db_url" in c.JupyterHub else "sqlite:"
    if url.startswith("sqlite:") or "://" not in url:
        synchronous = (db.get("sqlite") or {}).get("synchronous") or "full"
        wal = hubsqlite.db_kwargs(synchronous)
        # The caller's own engine settings are kept; only the connection's are added to.
        kwargs = dict(c.JupyterHub.db_kwargs) if "db_kwargs" in c.JupyterHub else {}
        kwargs["connect_args"] = {**wal["connect_args"], **kwargs.get("connect_args", {})}
        c.JupyterHub.db_kwargs = kwargs


def _secrets(c: Any, site: Site) -> None:
    # Without the mounted files (a local run), JupyterHub reads its usual
    # environment variables instead: JPY_COOKIE_SECRET, JUPYTERHUB_CRYPT_KEY,
    # CONFIGPROXY_AUTH_TOKEN.
    if cookie := read_secret(site.hub_secrets_dir / "cookie-secret"):
        c.JupyterHub.cookie_secret = bytes.fromhex(cookie)
    if crypt_key := read_secret(site.hub_secrets_dir / "crypt-key"):
        c.CryptKeeper.keys = [bytes.fromhex(crypt_key)]
    if proxy_token := read_secret(site.hub_secrets_dir / "proxy-token"):
        c.ConfigurableHTTPProxy.auth_token = proxy_token


def _spawner(c: Any, values: Mapping[str, Any], site: Site) -> None:
    singleuser = values["singleuser"]
    c.JupyterHub.spawner_class = "sovereign"
    c.SovereignSpawner.policy_file = str(site.policy_file)
    c.SovereignSpawner.namespace = values["release"]["namespace"]
    c.SovereignSpawner.home_mount_path = singleuser["homeMountPath"]
    c.SovereignSpawner.home_size = singleuser["homeSize"]
    c.SovereignSpawner.start_timeout = singleuser["startTimeout"]
    # User pods carry a readiness probe (spawner/readiness.py): start_timeout
    # bounds the wait for a slow server, http_timeout only the last network hop.
    c.SovereignSpawner.http_timeout = singleuser.get("httpTimeout", 30)
    c.SovereignSpawner.common_labels = {
        **values["labels"],
        "app.kubernetes.io/managed-by": "kubespawner",
        **singleuser.get("extraLabels", {}),
    }
    # The admin's baseline: the policy's plan is layered over these on every
    # spawn (spawner/overlay.py), so GPU tolerations and the region's
    # environment are added to them, never replace them.
    if env := singleuser.get("extraEnv"):
        c.SovereignSpawner.environment = dict(env)
    if tolerations := singleuser.get("extraTolerations"):
        c.SovereignSpawner.tolerations = list(tolerations)
    storage = singleuser.get("storage", {})
    c.SovereignSpawner.home_storage = storage.get("type", "dynamic")
    if volumes := storage.get("extraVolumes"):
        c.SovereignSpawner.volumes = list(volumes)
    if mounts := storage.get("extraVolumeMounts"):
        c.SovereignSpawner.volume_mounts = list(mounts)
    if access_modes := storage.get("homeAccessModes"):
        c.SovereignSpawner.home_access_modes = list(access_modes)
    if pull_secrets := values.get("imagePullSecrets"):
        c.SovereignSpawner.image_pull_secrets = [s["name"] for s in pull_secrets]
    _scheduling(c, values.get("scheduling") or {})


def _scheduling(c: Any, scheduling: Mapping[str, Any]) -> None:
    """The user scheduler, the user servers' PriorityClass and, with placeholders, their
    priority for the GPU queue (placeholder-held GPUs count as free)."""
    if name := scheduling.get("schedulerName"):
        c.SovereignSpawner.scheduler_name = name
    if priority_class := scheduling.get("priorityClassName"):
        c.SovereignSpawner.priority_class_name = priority_class
    if scheduling.get("userPriority") is not None:
        c.SovereignSpawner.gpu_queue_user_priority = int(scheduling["userPriority"])


def _authenticator(c: Any, values: Mapping[str, Any], site: Site) -> None:
    auth = values["auth"]
    host = (values.get("ingressHosts") or [""])[0]
    c.JupyterHub.authenticator_class = "sovereign"
    c.SovereignAuthenticator.issuer = auth["issuer"]
    c.SovereignAuthenticator.client_id = auth["clientId"]
    c.SovereignAuthenticator.client_secret = read_secret(site.oidc_secret_dir / "client-secret")
    c.SovereignAuthenticator.oauth_callback_url = auth["callbackUrl"] or (
        f"https://{host}/hub/oauth_callback" if host else ""
    )
    c.SovereignAuthenticator.scope = list(auth["scopes"])
    c.SovereignAuthenticator.username_claim = auth["usernameClaim"]
    c.SovereignAuthenticator.groups_claim = auth["groupsClaim"]
    c.SovereignAuthenticator.attribute_claims = dict(auth["attributeClaims"])
    c.SovereignAuthenticator.admin_groups = set(auth["adminGroups"])
    c.SovereignAuthenticator.auditor_groups = set(auth["auditorGroups"])
    c.SovereignAuthenticator.policy_file = str(site.policy_file)
    c.SovereignAuthenticator.stop_unentitled_servers = auth["stopUnentitledServers"]
    if contact := auth.get("supportContact"):
        c.SovereignAuthenticator.support_contact = contact
    c.SovereignAuthenticator.enable_auth_state = True


def audit_sinks(sinks: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The sinks as ``AuditTrail.sinks`` takes them: without the chart's own keys."""
    return [{k: v for k, v in s.items() if k not in CHART_ONLY_SINK_KEYS} for s in sinks]


def _audit(c: Any, audit: Mapping[str, Any], instance: str, site: Site) -> None:
    # The spool and chain position live on the state volume (a PVC whatever
    # the hub's database is), so a restart continues the chain.
    c.AuditTrail.spool_dir = str(site.state_dir / "audit-spool")
    c.AuditTrail.hmac_key_file = str(site.hmac_key_file)
    c.AuditTrail.on_spool_full = audit["onSpoolFull"]
    c.AuditTrail.spool_limit_bytes = audit["spoolLimitBytes"]
    c.AuditTrail.hub_instance = instance
    c.AuditTrail.sinks = audit_sinks(audit["sinks"])
    # The chart mounts the signing key when audit.signingKey.enabled; a missing or
    # malformed key then stops the hub with the file's name, never signs silently less.
    if audit.get("signing"):
        c.AuditTrail.signing_key_file = str(site.signing_key_file)
    if checkpoints := audit.get("checkpoints"):
        c.AuditTrail.checkpoint_every_records = checkpoints["everyRecords"]
        c.AuditTrail.checkpoint_every_seconds = float(checkpoints["everySeconds"])
    c.AuditTrail.shipping = "process"  # delivery never competes with the hub for the GIL


def _templates(c: Any, hub: Mapping[str, Any], site: Site) -> None:
    # The admin's templates first, so they can replace ours; ours extend the stock pages.
    c.JupyterHub.template_paths = [*hub.get("templatePaths", []), str(TEMPLATES)]
    from sovereign_hub.pages.admin import AdminView
    from sovereign_hub.pages.status import ServerCards

    c.JupyterHub.template_vars = {
        **hub.get("templateVars", {}),
        "sovereign_servers": ServerCards(str(site.policy_file)),
        "sovereign_admin": AdminView(str(site.policy_file)),
    }
    from sovereign_hub.pages import upgrade

    # An admin's own extra handlers (set before configure()) are kept.
    theirs = c.JupyterHub.extra_handlers if "extra_handlers" in c.JupyterHub else []
    c.JupyterHub.extra_handlers = [*theirs, *upgrade.handlers]


def _culler(cull: Mapping[str, Any], services: list, roles: list) -> None:
    """Idle culling, as a hub-managed service with only the scopes it needs."""
    if not cull["enabled"]:
        return
    command = [
        sys.executable, "-m", "sovereign_hub.culler",
        f"--timeout={cull['timeout']}", f"--cull-every={cull['every']}",
        f"--concurrency={cull['concurrency']}",
    ]  # fmt: skip
    if cull["maxAge"]:
        command.append(f"--max-age={cull['maxAge']}")
    services.append({"name": "idle-culler", "command": command})
    roles.append(
        {
            "name": "idle-culler",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["idle-culler"],
        }
    )


def _metrics(c: Any, metrics: Mapping[str, Any], site: Site, services: list, roles: list) -> None:
    """``/hub/metrics`` for Prometheus: open, or readable with the scraper's token.

    The token is the hub Secret's ``metrics-token``; the chart's ServiceMonitor
    sends it as its bearer token.
    """
    c.JupyterHub.authenticate_prometheus = metrics["authenticatePrometheus"]
    token = read_secret(site.hub_secrets_dir / "metrics-token")
    if not (metrics["authenticatePrometheus"] and token):
        return
    services.append({"name": METRICS_SERVICE, "api_token": token})
    roles.append(
        {"name": "metrics-scraper", "scopes": ["read:metrics"], "services": [METRICS_SERVICE]}
    )


def _viewer(c: Any, values: Mapping[str, Any], site: Site) -> None:
    """The audit viewer for the auditor groups, reading the first database sink."""
    groups = values["auth"]["auditorGroups"]
    databases = [s for s in values["audit"]["sinks"] if s["type"] in ("sqlite", "postgresql")]
    if not (groups and databases):
        return
    from sovereign_hub.audit.viewer import add_audit_viewer

    first = databases[0]
    add_audit_viewer(
        c,
        store=first.get("path") or first["dsn"],
        password_file=first.get("password_file", ""),
        hmac_key_file=str(site.hmac_key_file),
        spool_dir=str(site.state_dir / "audit-viewer-spool"),
        groups=list(groups),
        port=site.viewer_port,
        # The proxy reaches the viewer through the hub's Service; the viewer
        # listens on every address of the pod, since no pod can bind the
        # Service's ClusterIP.
        url_host=values["names"]["hub"] if site.in_pod else "127.0.0.1",
        bind_ip="0.0.0.0" if site.in_pod else "127.0.0.1",  # noqa: S104 - the pod's own addresses
    )


def run_extra_config(c: Any, directory: Path) -> list[Path]:
    """Run the admin's ``hub.extraConfig`` snippets, in key order, as z2jh does.

    Each snippet is its own file in the config ConfigMap, so a traceback names
    it. They run with ``c`` (and ``get_config``) bound to the hub's config, so
    a snippet may read and extend what :func:`configure` set.
    """
    ran = []
    for path in sorted(directory.glob(f"{EXTRA_CONFIG_PREFIX}*.py")):
        runpy.run_path(str(path), init_globals={"c": c, "get_config": lambda: c})
        ran.append(path)
    return ran


SHARING_SCOPES = ("shares!user", "read:users:name", "read:groups:name")
"""What every user needs to share their own servers by user or group name
(JupyterHub's default ``user`` role has only ``self``)."""


def enable_sharing(c: Any) -> None:
    """Let users share their running servers, as the policy's ``sharing`` section allows.

    Installs :mod:`sovereign_hub.sharing`, and adds :data:`SHARING_SCOPES` to the
    ``user`` role (keeping scopes another part of the config gave it) only when the
    policy lets some group share: the name scopes let every user look up any user
    or group name, which a hub where no one shares should not give. A policy that
    starts allowing sharing rolls the hub (the chart's checksum annotation).
    """
    from sovereign_hub import sharing

    sharing.install(c)
    if not _policy_allows_sharing(c):
        return
    roles = list(c.JupyterHub.get("load_roles", []))
    user = next((r for r in roles if r.get("name") == "user"), None)
    if user is None:
        user = {"name": "user", "scopes": ["self"]}
        roles.append(user)
    user["scopes"] = [
        *user.get("scopes", []),
        *(s for s in SHARING_SCOPES if s not in user.get("scopes", [])),
    ]
    c.JupyterHub.load_roles = roles


def _policy_allows_sharing(c: Any) -> bool:
    from sovereign_hub.policy import PolicyError, load_policy

    path = c.SovereignSpawner.get("policy_file") or "/etc/sovereign-hub/policy.yaml"
    try:
        return bool(load_policy(path).policy.sharing.groups)
    except (PolicyError, OSError):
        return False  # the spawner reports an unusable policy; no one shares meanwhile


def attach_audit(c: Any) -> None:
    """Start the audit trail and hand its reporter to the spawner and authenticator.

    Last: the trail also hooks the request log and event log set before it.
    """
    from sovereign_hub.audit import hub_reporter

    reporter = hub_reporter(c)
    c.SovereignSpawner.reporter = c.SovereignAuthenticator.reporter = reporter
    c.GovernedSharing.reporter = reporter


def main_config(c: Any, site: Site | None = None) -> None:
    """Everything the chart's ``jupyterhub_config.py`` does, in order."""
    site = site or Site.pod()
    configure(c, load_values(site.config_dir / "values.yaml"), site)
    enable_sharing(c)
    run_extra_config(c, site.config_dir)
    attach_audit(c)
