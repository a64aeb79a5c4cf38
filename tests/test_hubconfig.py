"""sovereign_hub.hubconfig: the chart's values → the hub's traits, one golden per values set.

The values are what the real Helm 4.1 renders into the hub's ConfigMap for
each combination, so a change of the chart or of the mapping shows here as
a change of the whole literal configuration, the way kubespawner's
test_objects shows whole manifests.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from traitlets.config import Config

from sovereign_hub.hubconfig import Site, configure, load_values, run_extra_config
from sovereign_hub.hubsqlite import WalConnection
from sovereign_hub.pages import TEMPLATES, upgrade
from sovereign_hub.pages.admin import AdminView
from sovereign_hub.pages.status import ServerCards
from tests.conftest import ROOT
from tests.test_helm_chart import HERE, by_kind, example_policy_values, helm_binary, render

PY = sys.executable
__all__ = ["example_policy_values"]  # a fixture, shared with the chart tests
COOKIE = "ab" * 32
CRYPT = "cd" * 32


def plain(value: Any) -> Any:
    """A Config as plain dicts, so == shows the whole difference."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def chart_values(tmp_path: Path, *files: Path, sets: tuple[str, ...] = ()) -> dict[str, Any]:
    docs = render(helm_binary("4.1"), *files, sets=sets)
    (config,) = [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-hub-config")
    ]
    for name, text in config["data"].items():
        (tmp_path / name).write_text(text)
    return load_values(tmp_path / "values.yaml")


def pod_site(tmp_path: Path, secrets: dict[str, str] | None = None) -> Site:
    secrets_dir = tmp_path / "hub-secrets"
    secrets_dir.mkdir()
    for name, value in (secrets or {}).items():
        (secrets_dir / name).write_text(value + "\n")
    (tmp_path / "oidc").mkdir()
    (tmp_path / "oidc" / "client-secret").write_text("oidc-secret\n")
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "password").write_text("db-password\n")
    return Site.pod(
        {
            "SOVEREIGN_HUB_CONFIG_DIR": str(tmp_path),
            "SOVEREIGN_HUB_STATE_DIR": "/srv/jupyterhub",
            "SOVEREIGN_HUB_SECRETS_DIR": str(secrets_dir),
            "SOVEREIGN_OIDC_SECRET_DIR": str(tmp_path / "oidc"),
            "SOVEREIGN_HUB_DB_PASSWORD_FILE": str(tmp_path / "db" / "password"),
        }
    )


LABELS = {
    "app.kubernetes.io/name": "sovereign-hub",
    "app.kubernetes.io/instance": "rel",
    "app.kubernetes.io/managed-by": "kubespawner",
}
CULLER = {
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}
POD_NETWORK = {
    "hub_bind_url": "http://:8081",
    "hub_connect_url": "http://rel-sovereign-hub-hub:8081",
    "cleanup_servers": False,
}
PROXY = {
    "should_start": False,
    "api_url": "http://rel-sovereign-hub-proxy-api:8001",
    "concurrency": 100,
}


def test_the_chart_defaults(tmp_path):
    values = chart_values(tmp_path)
    c = Config()
    configure(
        c,
        values,
        pod_site(
            tmp_path,
            {
                "cookie-secret": COOKIE,
                "crypt-key": CRYPT,
                "proxy-token": "proxy-token-1",
                "metrics-token": "metrics-token-1",
            },
        ),
    )
    assert plain(c) == {
        "JupyterHub": {
            **POD_NETWORK,
            "db_url": "sqlite:////srv/jupyterhub/jupyterhub.sqlite",
            "db_kwargs": {"connect_args": {"check_same_thread": False, "factory": WalConnection}},
            "cookie_secret": bytes.fromhex(COOKIE),
            "spawner_class": "sovereign",
            "authenticator_class": "sovereign",
            "template_paths": [str(TEMPLATES)],
            "template_vars": {
                "sovereign_servers": ServerCards("/etc/sovereign-hub/policy/policy.yaml"),
                "sovereign_admin": AdminView("/etc/sovereign-hub/policy/policy.yaml"),
            },
            "extra_handlers": upgrade.handlers,
            "authenticate_prometheus": True,
            "services": [
                {
                    "name": "idle-culler",
                    "command": [
                        PY,
                        "-m",
                        "sovereign_hub.culler",
                        "--timeout=3600",
                        "--cull-every=600",
                        "--concurrency=10",
                    ],
                },
                {"name": "metrics-scraper", "api_token": "metrics-token-1"},
            ],
            "load_roles": [
                CULLER,
                {
                    "name": "metrics-scraper",
                    "scopes": ["read:metrics"],
                    "services": ["metrics-scraper"],
                },
            ],
        },
        "ConfigurableHTTPProxy": {**PROXY, "auth_token": "proxy-token-1"},
        "CryptKeeper": {"keys": [bytes.fromhex(CRYPT)]},
        "SovereignSpawner": {
            "policy_file": "/etc/sovereign-hub/policy/policy.yaml",
            "namespace": "hub",
            "home_mount_path": "/home/jovyan",
            "home_size": "10Gi",
            "start_timeout": 300,
            "http_timeout": 30,
            "common_labels": LABELS,
            "home_storage": "dynamic",
            "home_access_modes": ["ReadWriteOnce"],
        },
        "SovereignAuthenticator": {
            "issuer": "https://idp.example.com/realms/corp",
            "client_id": "sovereign-hub",
            "client_secret": "oidc-secret",
            "oauth_callback_url": "",
            "scope": ["openid", "profile", "email"],
            "username_claim": "preferred_username",
            "groups_claim": "groups",
            "attribute_claims": {},
            "admin_groups": set(),
            "auditor_groups": set(),
            "policy_file": "/etc/sovereign-hub/policy/policy.yaml",
            "stop_unentitled_servers": False,
            "enable_auth_state": True,
        },
        "AuditTrail": {
            "spool_dir": "/srv/jupyterhub/audit-spool",
            "hmac_key_file": "/etc/sovereign-hub/audit/hmac/key",
            "on_spool_full": "fail-closed",
            "spool_limit_bytes": 536870912,
            "hub_instance": "rel-sovereign-hub",
            "sinks": [{"type": "sqlite", "path": "/srv/jupyterhub/audit.sqlite"}],
            "signing_key_file": "/etc/sovereign-hub/audit/signing/key.pem",
            "checkpoint_every_records": 1000,
            "checkpoint_every_seconds": 60.0,
            "shipping": "process",
        },
    }


def test_everything_on(tmp_path, example_policy_values):
    """PostgreSQL, every sink, auditors (so the viewer), escape hatches, templates."""
    values = chart_values(tmp_path, HERE / "full-values.yaml", example_policy_values)
    c = Config()
    configure(c, values, pod_site(tmp_path))  # the admin's Secret is not mounted: env fallbacks
    viewer_env = {
        "SOVEREIGN_AUDIT_STORE": "/srv/jupyterhub/audit.sqlite",
        "SOVEREIGN_AUDIT_HMAC_KEY_FILE": "/etc/sovereign-hub/audit/hmac/key",
        "SOVEREIGN_AUDIT_VIEWER_SPOOL": "/srv/jupyterhub/audit-viewer-spool",
        "SOVEREIGN_AUDIT_STORE_PASSWORD_FILE": "",
        "SOVEREIGN_AUDIT_VIEWER_IP": "0.0.0.0",
    }
    assert plain(c) == {
        "JupyterHub": {
            **POD_NETWORK,
            "db_url": "postgresql+psycopg://jupyterhub@db.corp.example:5432/jupyterhub"
            "?sslmode=verify-full",
            "db_kwargs": {"connect_args": {"password": "db-password"}},
            "spawner_class": "sovereign",
            "authenticator_class": "sovereign",
            "template_paths": ["/usr/local/share/sovereign-hub/templates", str(TEMPLATES)],
            "template_vars": {
                "org": "Corp Research",
                "sovereign_servers": ServerCards("/etc/sovereign-hub/policy/policy.yaml"),
                "sovereign_admin": AdminView("/etc/sovereign-hub/policy/policy.yaml"),
            },
            "extra_handlers": upgrade.handlers,
            "authenticate_prometheus": True,
            "services": [
                {
                    "name": "idle-culler",
                    "command": [
                        PY,
                        "-m",
                        "sovereign_hub.culler",
                        "--timeout=7200",
                        "--cull-every=600",
                        "--concurrency=10",
                        "--max-age=86400",
                    ],
                },
                {
                    "name": "audit",
                    "url": "http://rel-sovereign-hub-hub:10101",
                    "command": [PY, "-m", "sovereign_hub.audit.viewer"],
                    "environment": viewer_env,
                    "oauth_client_allowed_scopes": ["custom:audit:read"],
                    "oauth_no_confirm": True,
                    "display": True,
                },
            ],
            "load_roles": [
                CULLER,
                {
                    "name": "audit-readers",
                    "scopes": ["custom:audit:read"],
                    "groups": ["security-auditors"],
                },
                {"name": "user", "scopes": ["self", "access:services!service=audit"]},
            ],
            "custom_scopes": {
                "custom:audit:read": {"description": "Read the audit trail in the audit viewer."}
            },
        },
        "ConfigurableHTTPProxy": {**PROXY, "concurrency": 250},
        "SovereignSpawner": {
            "policy_file": "/etc/sovereign-hub/policy/policy.yaml",
            "namespace": "hub",
            "home_mount_path": "/home/jovyan",
            "home_size": "50Gi",
            "start_timeout": 300,
            "http_timeout": 30,
            "common_labels": {**LABELS, "cost-center": "research"},
            "environment": {"HTTPS_PROXY": "http://proxy.corp.example:3128"},
            "tolerations": [
                {
                    "key": "dedicated",
                    "operator": "Equal",
                    "value": "notebooks",
                    "effect": "NoSchedule",
                }
            ],
            "volumes": [{"name": "datasets", "persistentVolumeClaim": {"claimName": "datasets"}}],
            "volume_mounts": [{"name": "datasets", "mountPath": "/data", "readOnly": True}],
            "home_storage": "dynamic",
            "home_access_modes": ["ReadWriteOncePod"],
            "image_pull_secrets": ["registry-cred"],
        },
        "SovereignAuthenticator": {
            "issuer": "https://login.corp.example/realms/corp",
            "client_id": "sovereign-hub",
            "client_secret": "oidc-secret",
            "oauth_callback_url": "https://hub.corp.example/hub/oauth_callback",
            "scope": ["openid", "profile", "email"],
            "username_claim": "preferred_username",
            "groups_claim": "groups",
            "attribute_claims": {"country": "country"},
            "admin_groups": {"platform-admins"},
            "auditor_groups": {"security-auditors"},
            "policy_file": "/etc/sovereign-hub/policy/policy.yaml",
            "stop_unentitled_servers": True,
            "enable_auth_state": True,
        },
        "AuditTrail": {
            "spool_dir": "/srv/jupyterhub/audit-spool",
            "hmac_key_file": "/etc/sovereign-hub/audit/hmac/key",
            "on_spool_full": "fail-open",
            "spool_limit_bytes": 536870912,
            "hub_instance": "rel-sovereign-hub",
            "sinks": [
                {"type": "sqlite", "path": "/srv/jupyterhub/audit.sqlite"},
                {
                    "type": "postgresql",
                    "dsn": "postgresql://audit_writer@db.corp.example/audit?sslmode=verify-full",
                    "password_file": "/etc/sovereign-hub/audit/pg/password",
                },
                {
                    "type": "syslog",
                    "host": "siem.corp.example",
                    "ca_file": "/etc/sovereign-hub/audit/siem/ca.pem",
                },
                {
                    "type": "loki",
                    "url": "https://loki.corp.example",
                    "tenant": "security",
                    "token_file": "/etc/sovereign-hub/audit/loki/token",
                },
                {
                    "type": "opensearch",
                    "url": "https://search.corp.example:9200",
                    "username": "hub",
                    "password_file": "/etc/sovereign-hub/audit/search/password",
                },
                {
                    "type": "webhook",
                    "url": "https://soar.corp.example/hooks/jupyter",
                    "signing_key_file": "/etc/sovereign-hub/audit/soar/key",
                },
                {"type": "jsonl", "path": "-"},
            ],
            "signing_key_file": "/etc/sovereign-hub/audit/signing/key.pem",
            "checkpoint_every_records": 500,
            "checkpoint_every_seconds": 30.0,
            "shipping": "process",
        },
    }


def test_no_culler_no_metrics_auth_postgresql_viewer(tmp_path):
    """Culling off, metrics open, and the viewer reading a PostgreSQL store first."""
    sets = (
        "cull.enabled=false",
        "hub.metrics.authenticatePrometheus=false",
        "auth.auditorGroups={auditors}",
    )
    store = tmp_path / "store.yaml"
    store.write_text(
        yaml.safe_dump(
            {
                "audit": {
                    "sinks": [
                        {
                            "type": "postgresql",
                            "dsn": "postgresql://audit@pg.audit.svc:5432/audit",
                            "password_file": "/etc/sovereign-hub/audit/pg/password",
                        }
                    ]
                }
            }
        )
    )
    values = chart_values(tmp_path, store, sets=sets)
    c = Config()
    configure(c, values, pod_site(tmp_path, {"metrics-token": "unused-token"}))
    hub = plain(c)["JupyterHub"]
    assert hub["authenticate_prometheus"] is False
    assert [s["name"] for s in hub["services"]] == ["audit"]  # no culler, no scraper
    assert hub["services"][0]["environment"] == {
        "SOVEREIGN_AUDIT_STORE": "postgresql://audit@pg.audit.svc:5432/audit",
        "SOVEREIGN_AUDIT_HMAC_KEY_FILE": "/etc/sovereign-hub/audit/hmac/key",
        "SOVEREIGN_AUDIT_VIEWER_SPOOL": "/srv/jupyterhub/audit-viewer-spool",
        "SOVEREIGN_AUDIT_STORE_PASSWORD_FILE": "/etc/sovereign-hub/audit/pg/password",
        "SOVEREIGN_AUDIT_VIEWER_IP": "0.0.0.0",
    }
    assert [r["name"] for r in hub["load_roles"]] == ["audit-readers", "user"]


def test_a_local_run_leaves_addresses_database_and_proxy_to_the_caller(tmp_path):
    values = chart_values(tmp_path, sets=("auth.auditorGroups={auditors}",))
    c = Config()
    c.JupyterHub.services = [{"name": "test-admin", "api_token": "t" * 32}]
    site = Site.local(tmp_path, policy_file=tmp_path / "policy.yaml", viewer_port=18000)
    configure(c, values, site)
    hub = plain(c)["JupyterHub"]
    for key in ("hub_bind_url", "hub_connect_url", "db_url", "cleanup_servers"):
        assert key not in hub
    # JupyterHub's default database is SQLite: in WAL mode, as in a pod.
    assert hub["db_kwargs"]["connect_args"]["factory"] is WalConnection
    # The proxy's address is the caller's too; only how many route updates fly at once is set.
    assert plain(c)["ConfigurableHTTPProxy"] == {"concurrency": 100}
    assert hub["services"][0]["name"] == "test-admin"  # the caller's service is kept
    viewer = next(s for s in hub["services"] if s["name"] == "audit")
    assert viewer["url"] == "http://127.0.0.1:18000"
    assert viewer["environment"]["SOVEREIGN_AUDIT_VIEWER_IP"] == "127.0.0.1"
    assert plain(c)["AuditTrail"]["spool_dir"] == str(tmp_path / "audit-spool")


def test_extra_config_runs_in_key_order_on_the_same_config(tmp_path):
    (tmp_path / "extra-config.20-second.py").write_text("c.JupyterHub.order.append(2)\n")
    (tmp_path / "extra-config.10-first.py").write_text(
        "c.JupyterHub.order = [1]\nassert get_config() is c\n"
    )
    (tmp_path / "values.yaml").write_text("not: a snippet\n")
    c = Config()
    ran = run_extra_config(c, tmp_path)
    assert [p.name for p in ran] == ["extra-config.10-first.py", "extra-config.20-second.py"]
    assert c.JupyterHub.order == [1, 2]


def test_a_failing_snippet_names_its_file(tmp_path):
    (tmp_path / "extra-config.bad.py").write_text("c.JupyterHub.x = undefined_name\n")
    with pytest.raises(NameError) as info:
        run_extra_config(Config(), tmp_path)
    assert "extra-config.bad.py" in "".join(
        str(f.filename) for f in __import__("traceback").extract_tb(info.tb)
    )


def test_values_that_are_not_a_mapping_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "values.yaml"
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match=r"values\.yaml: expected the chart's hub values"):
        load_values(path)


def test_the_chart_config_file_is_thin_and_never_execs():
    text = (ROOT / "helm" / "sovereign-hub" / "files" / "jupyterhub_config.py").read_text()
    code = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert len(code) <= 3
    assert "exec" not in text


def test_sink_keys_only_the_chart_reads_never_reach_the_trail(tmp_path):
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "logging"}}}
    values_file = tmp_path / "sinks.yaml"
    values_file.write_text(
        yaml.safe_dump(
            {
                "audit": {
                    "sinks": [
                        {
                            "type": "syslog",
                            "host": "rsyslog.logging",
                            "port": 6514,
                            "egressTo": [peer],
                        }
                    ]
                }
            }
        )
    )
    out = tmp_path / "out"
    out.mkdir()
    values = chart_values(out, values_file)
    c = Config()
    configure(c, values, pod_site(out))
    assert c.AuditTrail.sinks == [{"type": "syslog", "host": "rsyslog.logging", "port": 6514}]


def test_enable_sharing_adds_the_sharing_scopes_to_the_user_role_and_governs_the_routes():
    from jupyterhub import apihandlers, handlers

    from sovereign_hub import share_access, share_handlers, sharing
    from sovereign_hub.hubconfig import enable_sharing

    c = Config()
    c.SovereignSpawner.policy_file = str(ROOT / "examples" / "policy.yaml")  # eu-researchers share
    c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self", "access:services!service=a"]}]
    enable_sharing(c)
    assert c.JupyterHub.load_roles == [
        {
            "name": "user",
            "scopes": [
                "self",
                "access:services!service=a",
                "shares!user",
                "read:users:name",
                "read:groups:name",
            ],
        }
    ]
    # The governor rides on the routes, so an extraConfig replacing the Tornado settings
    # wholesale (after enable_sharing, as the chart runs it) cannot take it away.
    c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 1}
    governed = [
        route
        for route in [*apihandlers.default_handlers, *handlers.default_handlers]
        if issubclass(route[1], sharing.Governed)
    ]
    assert {route[1] for route in governed} == set(share_handlers.SWAPS.values())
    assert all(isinstance(r[2]["governor"], sharing.GovernedSharing) for r in governed)
    routes = {
        route[0]: route[1] for route in [*apihandlers.default_handlers, *handlers.default_handlers]
    }
    assert routes[r"/api/shares/([^/]+)/([^/]*)"] is share_handlers.GovernedShareHandler
    assert routes[r"/api/share-codes/([^/]+)/([^/]*)"] is share_handlers.GovernedShareCodeHandler
    assert routes[r"/accept-share"] is share_handlers.GovernedAcceptShareHandler
    shared = r"/shared/([^/]+)/([^/]*)"
    assert routes[r"/api/users/([^/]+)" + shared] is share_handlers.GovernedUserShareHandler
    assert routes[r"/api/groups/([^/]+)" + shared] is share_handlers.GovernedGroupShareHandler
    assert routes[r"/api/oauth2/authorize"] is share_access.GovernedOAuthAuthorizeHandler
    assert routes[r"/api/user"] is share_access.GovernedSelfAPIHandler
    from jupyterhub import scopes

    from sovereign_hub import group_shares

    assert hasattr(scopes.get_scopes_for, group_shares._PATCHED)  # JupyterHub 6.1: patched


def test_without_sharing_in_the_policy_users_get_no_name_lookup_scopes(tmp_path):
    """read:users:name and read:groups:name let anyone list who and which groups exist:
    only a policy that lets some group share gives them."""
    from sovereign_hub.hubconfig import enable_sharing

    policy = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    policy.pop("sharing", None)
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    for path in (tmp_path / "policy.yaml", tmp_path / "missing.yaml"):
        c = Config()
        c.SovereignSpawner.policy_file = str(path)
        c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self"]}]
        enable_sharing(c)
        assert c.JupyterHub.load_roles == [{"name": "user", "scopes": ["self"]}]
