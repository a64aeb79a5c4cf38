"""No secret a hub run creates appears in its log, its audit stores or its spool.

One full run with every real component: the OIDC provider process, JupyterHub and
its proxy with the Sovereign authenticator and spawner, a notebook server on the
emulated cluster (Kubernetes is emulated), the audit trail into SQLite and a
real PostgreSQL whose writer has a password. The run logs in, spawns, uses API
tokens (in headers and, as careless scripts do, in a URL), is refused, stops.
Then every token, key and password it created is looked for, as is and
base64- or hex-encoded, in every byte the hub and the trail wrote.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import sys
from pathlib import Path

import psycopg
import requests
from kubernetes_asyncio import client as kube_client
from kubernetes_asyncio import config as kube_config

from sovereign_hub.audit.store import read
from sovereign_hub.sandbox.hubprocess import Hub, free_port
from sovereign_hub.sandbox.oidc import OidcProvider, login_via_provider
from tests.conftest import ROOT, TEST_NODES, eventually
from tests.hubs import refuse_pod_creates, sovereign_hub_config
from tests.test_spawner_hub import add_users, spawn

SINGLEUSER = Path(sys.executable).with_name("jupyterhub-singleuser")


def encodings(secret: str) -> set[str]:
    """``secret`` as is and in the encodings a log or a header would carry it."""
    raw = secret.encode()
    forms = {secret}
    candidates = [raw]
    with contextlib.suppress(ValueError):
        candidates.append(bytes.fromhex(secret))
    for data in candidates:
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(data).decode()
            forms |= {text, text.rstrip("=")}
        forms.add(data.hex())
    # Long enough that a match is the secret, not chance.
    return {f for f in forms if len(f) >= 12}


def written_by_the_run(*paths: Path) -> bytes:
    out = b""
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            out += f.read_bytes() + b"\n"
    return out


async def test_no_secret_of_a_full_run_is_written_anywhere(
    kube, postgres_server, pg_url, tmp_path, monkeypatch
):
    hmac_key = secrets.token_hex(24)
    crypt_key = secrets.token_hex(32)
    client_secret = "oidc-" + secrets.token_urlsafe(24)
    pg_password = "pg-" + secrets.token_urlsafe(18)
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", hmac_key)

    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(f"CREATE ROLE leakwriter LOGIN PASSWORD '{pg_password}'")
        db.execute(f"GRANT ALL ON DATABASE {pg_url.rsplit('/', 1)[1]} TO leakwriter")
        db.execute("GRANT ALL ON SCHEMA public TO leakwriter")
    postgres_server.require_password("leakwriter")
    password_file = tmp_path / "pg-password"
    password_file.write_text(pg_password + "\n")
    writer_url = pg_url.replace("postgres@", "leakwriter@")

    users = [{"sub": "ana", "preferred_username": "ana", "groups": ["eu-researchers"]}]
    provider = OidcProvider(users, tmp_path / "oidc.log")
    port = free_port()
    store = tmp_path / "audit.sqlite"
    spool = tmp_path / "spool"
    config = f"""
c.JupyterHub.authenticator_class = "sovereign"
c.SovereignAuthenticator.issuer = {provider.issuer!r}
c.SovereignAuthenticator.client_id = "jupyterhub"
c.SovereignAuthenticator.client_secret = {client_secret!r}
c.SovereignAuthenticator.oauth_callback_url = "http://127.0.0.1:{port}/hub/oauth_callback"
c.SovereignAuthenticator.policy_file = {str(ROOT / "examples" / "policy.yaml")!r}
c.JupyterHub.redirect_to_server = False
c.JupyterHub.spawner_class = "sovereign"
c.SovereignSpawner.policy_file = {str(ROOT / "examples" / "policy.yaml")!r}
c.SovereignSpawner.namespace = {kube.namespace!r}
c.SovereignSpawner.scheduler_name = {kube.scheduler_name!r}
c.SovereignSpawner.cmd = [{str(SINGLEUSER)!r}]
c.SovereignSpawner.args = {["--allow-root"] if os.geteuid() == 0 else []!r}
c.SovereignSpawner.start_timeout = 60
c.SovereignSpawner.http_timeout = 60
c.AuditTrail.spool_dir = {str(spool)!r}
c.AuditTrail.hub_instance = "hub-leak"
c.AuditTrail.sinks = [
    {{"type": "sqlite", "path": {str(store)!r}}},
    {{"type": "postgresql", "dsn": {writer_url!r}, "password_file": {str(password_file)!r}}},
]
from sovereign_hub.audit import hub_reporter
c.SovereignSpawner.reporter = hub_reporter(c)
c.SovereignAuthenticator.reporter = c.SovereignSpawner.reporter
"""
    hub = Hub(
        tmp_path / "hub",
        config,
        env={"JUPYTERHUB_CRYPT_KEY": crypt_key, "KUBECONFIG": str(kube.kubeconfig)},
        port=port,
    )
    try:
        session, answer = login_via_provider(hub.url, "ana")
        assert answer.status_code == 200, answer.text[-2000:]
        assert hub.api("POST", "/users/ana/server", json={"profile": "cpu-small"}).status_code in (
            201,
            202,
        )
        hub.wait_for_server("ana")
        user_token = hub.api("POST", "/users/ana/tokens", json={}).json()["token"]
        status = requests.get(
            f"{hub.url}/user/ana/api/status",
            headers={"Authorization": f"token {user_token}"},
            timeout=30,
        )
        assert status.status_code == 200
        # Careless clients put tokens in URLs; refused ones are logged twice by tornado.
        assert requests.get(f"{hub.url}/hub/api/users?token={user_token}", timeout=30).status_code
        assert (
            requests.get(f"{hub.url}/hub/api/users/ana?token=not-{user_token}", timeout=30)
        ).status_code == 403
        auth_state = hub.api("GET", "/users/ana").json()["auth_state"]
        hub.api("DELETE", "/users/ana/server")
        hub.wait_for_server("ana", ready=False)
        refused = hub.api("POST", "/users/ana/server", json={"profile": "gpu-a100", "x": 1})
        assert refused.status_code == 400, refused.text
        cookie_secret = (tmp_path / "hub" / "cookie_secret").read_text().strip()
        # jupyterhub-session-id is an identifier, not a credential (it cannot log anyone in;
        # the _xsrf token bound to it is signed with the cookie secret), and JupyterHub
        # itself logs it when it sets an _xsrf cookie; the login cookie and _xsrf are secrets.
        session_cookies = {
            c.name: c.value for c in session.cookies if c.name != "jupyterhub-session-id"
        }
        assert "jupyterhub-hub-login" in session_cookies
    finally:
        hub.stop()
        provider.stop()

    async def delivered():
        with psycopg.connect(pg_url) as db:
            (count,) = db.execute("SELECT count(*) FROM audit_events").fetchone()
        return count > 5

    await eventually(delivered, timeout=30)
    with psycopg.connect(pg_url) as db:
        pg_rows = "\n".join(
            str(row) for row in db.execute("SELECT * FROM audit_events").fetchall()
        ).encode()

    found = {
        "service API token": hub.token,
        "user API token": user_token,
        "cookie secret": cookie_secret,
        "audit HMAC key": hmac_key,
        "auth state encryption key": crypt_key,
        "OIDC client secret": client_secret,
        "PostgreSQL password": pg_password,
        "OIDC access token": auth_state["access_token"],
        "OIDC ID token": auth_state["id_token"],
        **{f"cookie {name}": value for name, value in session_cookies.items()},
    }
    if auth_state.get("refresh_token"):
        found["OIDC refresh token"] = auth_state["refresh_token"]
    places = {
        "hub log": written_by_the_run(hub.log_path),
        "audit spool": written_by_the_run(spool),
        "SQLite audit store": written_by_the_run(*tmp_path.glob("audit.sqlite*"))
        + json.dumps(list(read(str(store)))).encode(),
        "PostgreSQL audit store": pg_rows,
    }
    assert b"spawn-denied" in places["SQLite audit store"]
    assert b"login" in places["PostgreSQL audit store"]
    leaks = [
        f"{what} in the {where}"
        for what, secret in found.items()
        for where, data in places.items()
        for form in encodings(secret)
        if form.encode() in data
    ]
    assert not leaks, sorted(set(leaks))


async def test_a_pod_create_answered_429_or_5xx_never_logs_the_servers_token(
    make_cluster, tmp_path, monkeypatch
):
    """KubeSpawner's own create logged the whole pod, env included, when it was refused with a
    429 or a 5xx; the spawner sends the creates itself now (spawner/transient.py) and logs
    the answers only. Whichever path runs, the server's API token must not be in the log
    (emulated API server made to refuse the first three creates, logged at DEBUG)."""
    sent = refuse_pod_creates(monkeypatch, [429, 500, 503])
    kube = make_cluster(TEST_NODES)
    config = "\n".join(
        [
            *sovereign_hub_config(kube, ROOT / "examples" / "policy.yaml"),
            "c.JupyterHub.log_level = 'DEBUG'",
        ]
    )
    hub = Hub(tmp_path / "hub", config, env={"KUBECONFIG": str(kube.kubeconfig)})
    api = await kube_config.new_client_from_config(config_file=str(kube.kubeconfig))
    core = kube_client.CoreV1Api(api)
    try:
        add_users(hub, "eu-researchers", "ana")
        assert spawn(hub, "ana", profile="cpu-small", region="eu").status_code in (201, 202)

        async def created():
            pods = (await core.list_namespaced_pod(kube.namespace)).items
            return [p for p in pods if p.metadata.labels.get("hub.jupyter.org/username") == "ana"]

        (pod,) = await eventually(created, timeout=90, interval=0.5)
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        token = env["JUPYTERHUB_API_TOKEN"]
        log = hub.log_path.read_text(errors="replace")
    finally:
        await api.close()
        hub.stop()
    assert sent == [429, 500, 503]
    # The path under test ran: each refusal was logged and retried, and no pod was dumped.
    for status in (429, 500, 503):
        assert f"creating pod jupyter-ana: HTTP {status}; retrying" in log, log[-5000:]
    assert "Failed for" not in log
    assert not [form for form in encodings(token) if form in log], "the token is in the log"
