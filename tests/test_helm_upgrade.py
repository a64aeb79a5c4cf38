"""Upgrading from the previous release, and rolling back after the hub migrated its database.

The previous release is a copy of the chart in tests/data/chart-previous
(see its README) with the values it was installed with. Renders use the real
Helm binaries; the test of `lookup` across the upgrade needs a cluster, and
no real API server can run here, so Helm 3.18 renders with `--dry-run=server`
against the emulated API server (sandbox/kube; the whole install, upgrade,
rollback and uninstall with both Helms is tests/test_helm_lifecycle.py). The
database backups run against a real JupyterHub schema, in SQLite and in a
real PostgreSQL 15.
"""

# ruff: noqa: F811 - the fixtures imported from test_helm_chart are test arguments here
from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jupyterhub import orm
from sqlalchemy import text

from sovereign_hub.audit.store import read
from sovereign_hub.hubdb import HubDbError, backup, restore
from sovereign_hub.sandbox.postgres import server_bin
from tests.conftest import ROOT
from tests.test_helm_chart import (  # noqa: F401 - helm is a fixture
    CHART,
    by_kind,
    helm,
    helm_binary,
    run,
)

PREVIOUS = ROOT / "tests" / "data" / "chart-previous"
INSTALLED = ROOT / "tests" / "data" / "chart-previous-values.yaml"
OPERATIONS = ROOT / "docs" / "howto" / "operations.md"
NAME = "rel-sovereign-hub"


def render_chart(helm: Path, chart: Path, *sets: str) -> list[dict]:
    args = ["template", "rel", str(chart), "--namespace", "hub", "-f", str(INSTALLED)]
    for s in sets:
        args += ["--set", s]
    done = run(helm, *args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def named(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in by_kind(docs, kind)}


def test_the_fixture_is_an_older_chart_than_the_current_one():
    # It predates the signing key and the backup hook.
    for current in ("templates/hub/backup-job.yaml", "templates/audit-public-keys.yaml"):
        assert (CHART / current).is_file()
        assert not (PREVIOUS / current).exists()
    assert "signingKey" not in (PREVIOUS / "values.yaml").read_text()


def test_an_upgrade_keeps_names_selectors_volumes_and_secrets(helm):
    old, new = render_chart(helm, PREVIOUS), render_chart(helm, CHART)
    # The hub's volume: same claim, same spec (a PVC's spec is immutable but its size).
    assert (
        named(old, "PersistentVolumeClaim")[f"{NAME}-hub-db"]["spec"]
        == named(new, "PersistentVolumeClaim")[f"{NAME}-hub-db"]["spec"]
    )
    assert named(new, "PersistentVolumeClaim")[f"{NAME}-hub-db"]["spec"]["resources"] == {
        "requests": {"storage": "5Gi"}
    }
    # Workload selectors are immutable: a change would make `helm upgrade` fail.
    for kind in ("Deployment", "DaemonSet"):
        before, after = named(old, kind), named(new, kind)
        assert set(before) <= set(after), kind
        for name, doc in before.items():
            assert after[name]["spec"]["selector"] == doc["spec"]["selector"], name
    # Services keep their names and ports (the proxy's address, the hub's for the viewer).
    for name, service in named(old, "Service").items():
        ports = {(p["name"], p["port"]) for p in service["spec"]["ports"]}
        assert ports <= {
            (p["name"], p["port"]) for p in named(new, "Service")[name]["spec"]["ports"]
        }
    # Every Secret the old release generated is rendered again, with the same keys,
    # kept on uninstall; `lookup` then fills in the old values (the next test).
    old_secrets, new_secrets = named(old, "Secret"), named(new, "Secret")
    for name, secret in old_secrets.items():
        assert set(new_secrets[name]["data"]) == set(secret["data"]), name
        assert new_secrets[name]["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert set(new_secrets) - set(old_secrets) == {f"{NAME}-audit-signing"}


def test_the_database_is_backed_up_before_the_new_hub_migrates_it(helm):
    docs = render_chart(helm, CHART)
    hooks = [d for d in docs if "helm.sh/hook" in d["metadata"].get("annotations", {})]
    assert [(h["kind"], h["metadata"]["name"]) for h in hooks] == [
        ("NetworkPolicy", f"{NAME}-hub-db-backup"),
        ("Job", f"{NAME}-hub-db-backup"),
    ]
    policy, job = hooks
    # Created first (lower weight), it denies the backup pod every connection.
    assert int(policy["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"]
    assert "egress" not in policy["spec"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= (
        job["spec"]["template"]["metadata"]["labels"].items()
    )
    # Only on upgrade: a first install has no database to copy.
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    hub = named(docs, "Deployment")[f"{NAME}-hub"]["spec"]["template"]["spec"]
    # The migration is the new hub's own start (--upgrade-db), which Helm only
    # reaches once every pre-upgrade hook succeeded.
    assert "--upgrade-db" in hub["containers"][0]["args"]
    pod = job["spec"]["template"]["spec"]
    claim = {v["name"]: v for v in pod["volumes"]}["state"]["persistentVolumeClaim"]
    assert claim == {v["name"]: v for v in hub["volumes"]}["state"]["persistentVolumeClaim"]
    args = pod["containers"][0]["args"]
    assert args[:4] == ["sovhub", "hub-db", "backup", "/srv/jupyterhub/jupyterhub.sqlite"]
    assert args[4].startswith("/srv/jupyterhub/backups/jupyterhub-r")
    assert args[5] == "--keep=5"
    # Beside the hub, where its ReadWriteOnce volume is attached.
    (term,) = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "hub"
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    "sets",
    [
        ("hub.db.backup.enabled=false",),
        ("hub.db.type=postgresql", "hub.db.url=postgresql://hub@db/hub",
         "hub.db.passwordSecret.name=hub-db"),
        ("hub.db.pvc.accessModes={ReadWriteOncePod}",),
    ],
    ids=["off", "postgresql", "read-write-once-pod"],
)  # fmt: skip
def test_no_backup_job_where_it_cannot_or_need_not_run(sets):
    docs = render_chart(helm_binary("4.1"), CHART, *sets)
    assert not [d for d in by_kind(docs, "Job")]


async def test_lookup_renders_the_previous_releases_secrets_again_emulated_api_server(kube, core):
    """The old release's generated Secrets, stored in the (emulated) cluster, come back
    byte for byte when Helm 3.18 renders the new chart with `--dry-run=server`."""
    old = named(render_chart(helm_binary("3.18"), PREVIOUS), "Secret")
    await core.create_namespace({"metadata": {"name": "hub"}})
    for name, secret in old.items():
        body = {"metadata": {"name": name}, "data": secret["data"]}
        await core.create_namespaced_secret("hub", body)
    done = subprocess.run(
        [str(helm_binary("3.18")), "template", "rel", str(CHART), "--namespace", "hub",
         "-f", str(INSTALLED), "--dry-run=server", "--disable-openapi-validation"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "KUBECONFIG": str(kube.kubeconfig),
             "HELM_CACHE_HOME": "/tmp/helm-cache", "HELM_CONFIG_HOME": "/tmp/helm-config"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    new = named([d for d in yaml.safe_load_all(done.stdout) if d], "Secret")
    for name, secret in old.items():
        assert new[name]["data"] == secret["data"], name
    # The new signing key is generated, once, on the upgrade that introduces it.
    pem = base64.b64decode(new[f"{NAME}-audit-signing"]["data"]["signing-key"])
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def hub_database(url: str) -> None:
    """A JupyterHub database as the hub creates it, with two users."""
    session = orm.new_session_factory(url)()
    session.add_all([orm.User(name="ana"), orm.User(name="bo")])
    session.commit()
    session.close()


def users(url: str) -> list[str]:
    session = orm.new_session_factory(url)()
    try:
        return sorted(u.name for u in session.query(orm.User))
    finally:
        session.close()


def sovhub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sovereign_hub.cli", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_sqlite_backup_while_the_hub_writes_then_restore_before_rollback(tmp_path):
    database = tmp_path / "jupyterhub.sqlite"
    url = f"sqlite:///{database}"
    hub_database(url)
    # The old hub is still running and holds the database open mid-transaction.
    writer = orm.new_session_factory(url)()
    writer.add(orm.User(name="uncommitted"))
    writer.flush()
    out = tmp_path / "backups" / "jupyterhub-r3.sqlite"
    done = sovhub("hub-db", "backup", str(database), str(out), "--keep=2")
    writer.rollback()
    writer.close()
    assert done.returncode == 0, done.stderr
    assert users(f"sqlite:///{out}") == ["ana", "bo"]  # consistent: no uncommitted row
    # The new hub migrates: here, a changed schema version and new rows.
    session = orm.new_session_factory(url)()
    version = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    session.execute(text("UPDATE alembic_version SET version_num = 'from-the-future'"))
    session.add(orm.User(name="cy"))
    session.commit()
    session.close()
    # The hub of the previous release now refuses the database, as JupyterHub does.
    with pytest.raises(orm.DatabaseSchemaMismatch):
        users(url)
    # Rollback: the hub is stopped, the backup is put back, the old hub starts on it.
    done = sovhub("hub-db", "restore", str(out), str(database))
    assert done.returncode == 0, done.stderr
    assert users(url) == ["ana", "bo"]
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == (version,)
    db.close()
    assert version != "from-the-future"
    # A backup is never overwritten, and a corrupt one is never restored.
    assert "exists; not overwriting" in sovhub("hub-db", "backup", str(database), str(out)).stderr
    (tmp_path / "broken.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    with pytest.raises((HubDbError, sqlite3.DatabaseError)):
        restore(tmp_path / "broken.sqlite", database)
    assert users(url) == ["ana", "bo"]


def test_only_the_newest_backups_are_kept_and_a_first_install_has_none(tmp_path):
    database = tmp_path / "jupyterhub.sqlite"
    assert backup(database, tmp_path / "backups" / "jupyterhub-r1.sqlite") is None
    hub_database(f"sqlite:///{database}")
    for revision in (1, 2, 3, 10):
        backup(database, tmp_path / "backups" / f"jupyterhub-r{revision}.sqlite", keep=2)
    kept = sorted(p.name for p in (tmp_path / "backups").iterdir())
    assert kept == ["jupyterhub-r10.sqlite", "jupyterhub-r3.sqlite"]  # by revision, not name


def documented(command: str) -> list[str]:
    """The flags of a `pg_dump`/`pg_restore` line in the operations guide."""
    (line,) = [
        line
        for line in OPERATIONS.read_text().splitlines()
        if line.lstrip("$ ").startswith(command + " ")
    ]
    # Where the dump goes and which database are the test's own.
    return [
        w for w in line.split() if w.startswith("--") and not w.startswith(("--file", "--dbname"))
    ]


def test_postgresql_backup_and_restore_with_the_guides_commands(pg_url, tmp_path):
    """Real PostgreSQL 15: the guide's pg_dump before the upgrade, pg_restore before rollback."""
    url = pg_url.replace("postgresql://", "postgresql+psycopg://")
    hub_database(url)
    bin_ = server_bin()
    dump = tmp_path / "jupyterhub-r3.dump"
    done = subprocess.run([str(bin_ / "pg_dump"), *documented("pg_dump"), f"--file={dump}", pg_url],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    session = orm.new_session_factory(url)()
    session.add(orm.User(name="cy"))
    session.execute(text("UPDATE alembic_version SET version_num = 'from-the-future'"))
    session.commit()
    session.close()
    with pytest.raises(orm.DatabaseSchemaMismatch):
        users(url)
    done = subprocess.run(
        [str(bin_ / "pg_restore"), *documented("pg_restore"), f"--dbname={pg_url}", str(dump)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert users(url) == ["ana", "bo"]
    session = orm.new_session_factory(url)()
    version = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    session.close()
    assert version != "from-the-future"


def test_the_guides_restore_pod_is_valid_restricted_and_runs_the_restore(tmp_path):
    """The pod the operations guide applies before `helm rollback`, checked as the chart's are."""
    import kubernetes_validate

    from sovereign_hub.spawner.security import restricted_violations

    blocks = OPERATIONS.read_text().split("```yaml\n")[1:]
    (pod,) = [
        doc for b in blocks if (doc := yaml.safe_load(b.split("```")[0])).get("kind") == "Pod"
    ]
    kubernetes_validate.validate(pod, "1.35.0", strict=True)
    assert restricted_violations(pod["spec"], "Pod/hub-db-restore") == []
    (container,) = pod["spec"]["containers"]
    assert container["args"][:3] == ["sovhub", "hub-db", "restore"]
    backup_dir, database = Path(container["args"][3]).parent, Path(container["args"][4])
    # The same paths and claim the hook Job backs up into.
    job = named(render_chart(helm_binary("4.1"), CHART), "Job")[f"{NAME}-hub-db-backup"]
    hook = job["spec"]["template"]["spec"]
    assert Path(hook["containers"][0]["args"][4]).parent == backup_dir
    assert Path(hook["containers"][0]["args"][3]) == database
    assert pod["spec"]["volumes"] == [
        {"name": "state", "persistentVolumeClaim": hook["volumes"][0]["persistentVolumeClaim"]}
    ]
    assert container["volumeMounts"] == [{"name": "state", "mountPath": "/srv/jupyterhub"}]


def chart_site(chart: Path, values: Path, out: Path, namespace: str) -> Path:
    """The hub's mounted files as ``chart`` renders them with ``values``: its ConfigMaps."""
    docs = render_chart_with(helm_binary("3.18"), chart, values, namespace)
    out.mkdir()
    for doc in by_kind(docs, "ConfigMap"):
        for name, body in doc["data"].items():
            (out / name).write_text(body)
    return out


def render_chart_with(helm: Path, chart: Path, values: Path, namespace: str) -> list[dict]:
    done = run(helm, "template", "rel", str(chart), "--namespace", namespace, "-f", str(values))
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def stored_pins(database: Path, user: str) -> dict:
    with sqlite3.connect(database) as db:
        (state,) = db.execute(
            "SELECT spawners.state FROM spawners JOIN users ON users.id = spawners.user_id "
            "WHERE users.name = ? AND spawners.name = ''",
            (user,),
        ).fetchone()
    return json.loads(state)["sovereign"]["pins"]


def test_upgrading_a_running_hub_keeps_servers_pins_and_one_audit_chain_emulated_cluster(
    kube, tmp_path, oidc_ana
):
    """The previous release's hub, then the current one, on the same state and secrets.

    Both run from this checkout's code (no image of the previous release can run
    here), each with the jupyterhub_config.py and ConfigMaps its chart renders, on
    the emulated cluster: what the upgrade changes is the chart. ana logs in
    through the real OIDC provider and starts a server under the previous
    release; the current release's hub must find her server still running, her
    image pin kept, and continue the audit chain, which then verifies whole.
    """
    from sovereign_hub.audit.signing import new_private_key_pem
    from sovereign_hub.sandbox.hubprocess import Hub, free_port
    from sovereign_hub.sandbox.oidc import login_via_provider
    from tests.test_spawner_hub import SINGLEUSER

    port, hub_port, proxy_api = free_port(), free_port(), free_port()
    addresses = (
        f'c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"\n'
        f'c.JupyterHub.hub_connect_url = "http://127.0.0.1:{hub_port}"\n'
        "c.ConfigurableHTTPProxy.should_start = True\n"
        f'c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"\n'
        # Where a pod's namespace and image would say: the emulated cluster's, and the
        # single-user server of this venv (the emulated kubelet runs it as a process).
        f"c.SovereignSpawner.namespace = {kube.namespace!r}\n"
        f"c.SovereignSpawner.scheduler_name = {kube.scheduler_name!r}\n"
        f"c.SovereignSpawner.cmd = [{str(SINGLEUSER)!r}]\n"
        f"c.SovereignSpawner.args = {['--allow-root'] if os.geteuid() == 0 else []!r}\n"
    )
    values = tmp_path / "values.yaml"
    installed = yaml.safe_load(INSTALLED.read_text())
    installed["hub"]["extraConfig"] = {"99-addresses": addresses}
    installed["auth"] = {
        "issuer": oidc_ana.issuer,
        "callbackUrl": f"http://127.0.0.1:{port}/hub/oauth_callback",
        "attributeClaims": {"country": "country"},
        "clientSecret": {"value": "test-client-secret"},
    }
    installed["audit"] = {"sinks": [{"type": "sqlite", "path": str(tmp_path / "audit.sqlite")}]}
    policy = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    policy.pop("sharing")  # the previous release's schema predates sharing rules
    installed["policy"] = policy
    values.write_text(yaml.safe_dump(installed))
    secrets_dir = tmp_path / "secrets"
    (secrets_dir / "oidc").mkdir(parents=True)
    (secrets_dir / "oidc" / "client-secret").write_text("test-client-secret")
    (secrets_dir / "hmac").write_text(os.urandom(32).hex())
    # The current release mounts a checkpoint signing key; the previous one had none.
    private, public, _ = new_private_key_pem()
    (secrets_dir / "signing.pem").write_bytes(private)
    (secrets_dir / "signing.pub").write_bytes(public)
    state = tmp_path / "state"
    state.mkdir()
    crypt_key = os.urandom(32).hex()

    def start(site: Path) -> Hub:
        env = {
            "KUBECONFIG": str(kube.kubeconfig),
            "JUPYTERHUB_CRYPT_KEY": crypt_key,
            "SOVEREIGN_HUB_CONFIG_DIR": str(site),
            "SOVEREIGN_HUB_STATE_DIR": str(state),
            "SOVEREIGN_POLICY_FILE": str(site / "policy.yaml"),
            "SOVEREIGN_AUDIT_HMAC_KEY_FILE": str(secrets_dir / "hmac"),
            "SOVEREIGN_AUDIT_SIGNING_KEY_FILE": str(secrets_dir / "signing.pem"),
            "SOVEREIGN_OIDC_SECRET_DIR": str(secrets_dir / "oidc"),
            "SOVEREIGN_HUB_SECRETS_DIR": str(secrets_dir / "no-such-dir"),
        }
        config = (
            "import runpy\n"
            f"runpy.run_path({str(site / 'jupyterhub_config.py')!r}, "
            "init_globals={'get_config': lambda: c})\n"
        )
        return Hub(tmp_path / "hub", config, env=env, port=port)

    old = start(chart_site(PREVIOUS, values, tmp_path / "previous", kube.namespace))
    try:
        _, page = login_via_provider(old.url, "ana")
        assert page.status_code == 200
        started = old.api(
            "POST", "/users/ana/server", json={"profile": "cpu-small", "region": "eu"}
        )
        assert started.status_code in (201, 202), started.text
        old.wait_for_server("ana")
    finally:
        old.stop()
    pins_before = stored_pins(state / "jupyterhub.sqlite", "ana")
    assert pins_before, "the previous release's hub recorded no pin"

    new = start(chart_site(CHART, values, tmp_path / "current", kube.namespace))
    try:
        # The server started under the previous release is still ana's, and running.
        model = new.api("GET", "/users/ana").json()
        assert model["servers"][""]["ready"], model
        assert stored_pins(state / "jupyterhub.sqlite", "ana") == pins_before
        # A new login and a restart of her server under the current release.
        _, page = login_via_provider(new.url, "ana")
        assert page.status_code == 200
        assert new.api("DELETE", "/users/ana/server").status_code in (202, 204)
        new.wait_for_server("ana", ready=False)
        again = new.api("POST", "/users/ana/server", json={"profile": "cpu-small", "region": "eu"})
        assert again.status_code in (201, 202), again.text
        new.wait_for_server("ana")
        assert stored_pins(state / "jupyterhub.sqlite", "ana") == pins_before
    finally:
        new.stop()

    records = list(read(str(tmp_path / "audit.sqlite")))
    kinds = [r["schema"].rstrip("/").split("/")[-2] for r in records]
    # One chain across both releases: the current hub continued the previous one's
    # epoch from the spool on the state volume instead of starting a new one.
    assert kinds.count("epoch-started") == 1, kinds
    assert kinds.count("policy-loaded") == 2  # one per release's hub
    assert kinds.count("login") == 2
    assert kinds.count("server-started") == 2
    assert kinds.count("server-stopped") == 1
    verify_env = {k: v for k, v in os.environ.items() if not k.startswith("SOVEREIGN_AUDIT_")}
    verified = subprocess.run(
        [sys.executable, "-m", "sovereign_hub.cli", "audit", "verify", str(tmp_path / "audit.sqlite"),
         "--key-file", str(secrets_dir / "hmac")],
        capture_output=True, text=True, timeout=60, env=verify_env,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    public_check = subprocess.run(
        [sys.executable, "-m", "sovereign_hub.cli", "audit", "verify", str(tmp_path / "audit.sqlite"),
         "--public-key", str(secrets_dir / "signing.pub")],
        capture_output=True, text=True, timeout=60, env=verify_env,
    )  # fmt: skip
    # The previous release signed nothing: a public-key verifier is told exactly which
    # records predate signing (docs/howto/operations.md, "Upgrade"), and exits 3 (not
    # proven by key) rather than 1 (broken); --allow-unsigned-prefix accepts them.
    assert public_check.returncode == 3, public_check.stdout
    assert "chain intact, NOT PROVEN BY KEY" in public_check.stdout
    unsigned = [line for line in public_check.stdout.splitlines() if "[unsigned]" in line]
    signed_at = next(
        i + 1 for i, r in enumerate(records) if kinds[i] == "checkpoint" and r["data"]["signature"]
    )
    assert len(unsigned) == 1, public_check.stdout
    assert "records #1..#" in unsigned[0]
    assert f"checkpoint #{signed_at} links" in unsigned[0]
    accepted = subprocess.run(
        [sys.executable, "-m", "sovereign_hub.cli", "audit", "verify", str(tmp_path / "audit.sqlite"),
         "--public-key", str(secrets_dir / "signing.pub"), "--allow-unsigned-prefix"],
        capture_output=True, text=True, timeout=60, env=verify_env,
    )  # fmt: skip
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert f"chain intact: {len(records)} records" in verified.stdout, verified.stdout
