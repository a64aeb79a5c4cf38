"""The sandbox: the whole of Sovereign Hub on one machine, with Kubernetes emulated.

``make sandbox`` (or ``python -m sovereign_hub.sandbox``) starts, all on
127.0.0.1: an OpenID Connect provider with the demo users, the emulated
Kubernetes (API server, scheduler, process kubelet) with a two-region node
inventory, and JupyterHub with its proxy, the Sovereign spawner and
authenticator, the example policy and the audit trail in SQLite. Ctrl-C stops
everything it started.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sovereign_hub.audit.sinks.postgresql import is_postgres_url
from sovereign_hub.hubconfig import sqlalchemy_url
from sovereign_hub.policy import PolicyError, load_policy

from .containers import RuntimeUnavailable, check_oci, policy_with_images
from .containers import hub_config as container_hub_config
from .gatewayprocess import Gateway
from .hubprocess import CHP, Hub, free_port
from .kube.cluster import Cluster
from .kube.inventory import InventoryError, load_inventory
from .oidc import OidcProvider
from .postgres import LocalPostgres
from .regional import RegionalSandboxError, cluster_name, policy_with_clusters, split_inventory
from .tls import local_certificates

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class DemoUser:
    sub: str
    groups: tuple[str, ...]
    country: str
    shows: str


DEMO_USERS = (
    DemoUser("ana", ("eu-researchers",), "DE", "EU researcher: GPU profiles, EU region only"),
    DemoUser("bob", ("us-analysts",), "US", "US analyst: CPU only, US region only"),
    DemoUser("carol", ("contractors",), "NL", "no entitlement: refused with a clear page"),
    DemoUser("ada", ("platform-admins",), "DE", "platform admin: the hub's admin panel"),
    DemoUser(
        "sam",
        ("security-auditors",),
        "DE",
        "security auditor: may log in to review the audit trail",
    ),
)


# The environment of images/notebook-cpu, built from its hashed lock by `make
# notebook-env`: notebook "pods" run what the image ships.
NOTEBOOK_VENV = ROOT / ".venv-notebook"


def notebook_command() -> Path:
    """The single-user server of the notebook image's environment (or, without it, ours)."""
    command = NOTEBOOK_VENV / "bin" / "jupyterhub-singleuser"
    if command.exists():
        return command
    print(
        f"  note: {NOTEBOOK_VENV} is missing (make notebook-env builds it from "
        "images/notebook-cpu's lock); notebooks run in the hub's environment",
        file=sys.stderr,
    )
    return Path(sys.executable).with_name("jupyterhub-singleuser")


def sandbox_values(*, issuer: str, port: int, namespace: str, store: str, state: Path) -> dict:
    """The sandbox's hub, in the chart's values shape (``sovereign_hub.hubconfig``)."""
    sink = (
        {"type": "postgresql", "dsn": store}
        if store
        else {"type": "sqlite", "path": str(state / "audit.sqlite")}
    )
    return {
        "release": {"name": "sandbox", "namespace": namespace, "fullname": "sandbox"},
        "labels": {
            "app.kubernetes.io/name": "sovereign-hub",
            "app.kubernetes.io/instance": "sandbox",
        },
        "hub": {"metrics": {"authenticatePrometheus": True}},
        "singleuser": {"homeMountPath": "/home/jovyan", "homeSize": "10Gi", "startTimeout": 120},
        "cull": {"enabled": False},
        "auth": {
            "issuer": issuer,
            "clientId": "sovereign-sandbox",
            "callbackUrl": f"http://127.0.0.1:{port}/hub/oauth_callback",
            "scopes": ["openid", "profile", "email"],
            "usernameClaim": "preferred_username",
            "groupsClaim": "groups",
            "attributeClaims": {"country": "country"},
            "adminGroups": ["platform-admins"],
            "auditorGroups": ["security-auditors"],
            "stopUnentitledServers": False,
            "supportContact": "platform-team@example.com",
        },
        "audit": {"onSpoolFull": "fail-closed", "spoolLimitBytes": 536870912, "sinks": [sink]},
    }


def hub_config(
    *,
    issuer: str,
    port: int,
    policy: Path,
    cluster: Cluster,
    state: Path,
    store: str = "",
    hub_db: str = "",
) -> str:
    """The hub's configuration: the chart's mapping (``sovereign_hub.hubconfig``) for a
    local run, plus what only the sandbox sets (the emulated scheduler, the notebook
    command). ``store`` is a PostgreSQL URL or empty for SQLite in ``state``; ``hub_db``
    a PostgreSQL URL for JupyterHub's own database, or empty for its SQLite file."""
    state.mkdir(parents=True, exist_ok=True)
    values = sandbox_values(
        issuer=issuer, port=port, namespace=cluster.namespace, store=store, state=state
    )
    (state / "values.yaml").write_text(yaml.safe_dump(values))
    (state / "oidc").mkdir(exist_ok=True)
    (state / "oidc" / "client-secret").write_text("sandbox-only-secret")
    singleuser = notebook_command()
    root_args = ["--allow-root"] if os.geteuid() == 0 else []
    # Before configure(), which gives a SQLite database its WAL settings and leaves any
    # other alone.
    database = f"c.JupyterHub.db_url = {sqlalchemy_url(hub_db)!r}\n" if hub_db else ""
    return f"""
from pathlib import Path
from sovereign_hub.hubconfig import Site, attach_audit, configure, enable_sharing, load_values

site = Site.local(
    Path({str(state)!r}), policy_file=Path({str(policy)!r}), viewer_port={free_port()}
)
{database}configure(c, load_values(site.config_dir / "values.yaml"), site)
c.SovereignSpawner.scheduler_name = {cluster.scheduler_name!r}
c.SovereignSpawner.cmd = [{str(singleuser)!r}]
c.SovereignSpawner.args = {root_args!r}
c.SovereignSpawner.default_url = "/lab"
enable_sharing(c)
attach_audit(c)
"""


def banner(
    url: str, issuer: str, cluster: Cluster, state: Path, store: str, regions: str = ""
) -> str:
    users = "\n".join(f"    {u.sub:6} {u.shows}" for u in DEMO_USERS)
    return f"""
  Sovereign Hub sandbox is running.
  ============================================================================
  NOTE: Kubernetes is EMULATED here (an API server, scheduler and a process
  kubelet on this machine: notebook "pods" are local processes). Production
  runs on a real cluster with `helm install`.

  Open:        {url}
  Log in as (type the name on the provider's page, no password):
{users}

  Audit viewer:       {url}/services/audit/   (log in as sam)
  Identity provider:  {issuer}
  Kubernetes API:     {cluster.server}   (KUBECONFIG={cluster.kubeconfig})
  Audit trail:        .venv/bin/sovhub audit query {store}
                      SOVEREIGN_AUDIT_HMAC_KEY=$(cat {state / "audit-hmac-key"}) \\
                        .venv/bin/sovhub audit verify {store}

{regions}  Press Ctrl-C to stop everything.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sovereign_hub.sandbox", description=__doc__)
    parser.add_argument(
        "--policy", default=str(ROOT / "examples" / "policy.yaml"), help="policy file"
    )
    parser.add_argument("--nodes", default=str(HERE / "nodes.yaml"), help="node inventory (YAML)")
    parser.add_argument("--port", type=int, default=8000, help="port of the hub (default 8000)")
    parser.add_argument("--state-dir", default=".sandbox", help="where the sandbox keeps its state")
    parser.add_argument(
        "--audit-store",
        default="sqlite",
        help="where the audit trail is stored: `sqlite` (default, in the state directory), "
        "`postgresql` (start a local PostgreSQL server for this run, from Debian's package), "
        "or a `postgresql://` URL of an existing database",
    )
    parser.add_argument(
        "--region-cluster",
        action="append",
        default=[],
        metavar="REGION",
        help="run REGION (a policy region) in an emulated cluster of its own, holding the "
        "inventory's nodes of that region, as a region in its own cluster (repeatable)",
    )
    parser.add_argument(
        "--gateway",
        action="store_true",
        help="reach each --region-cluster region through a sovereign-gateway process of its "
        "own (mutual TLS), as when the hub cannot reach that cluster's pod IPs",
    )
    parser.add_argument(
        "--runtime",
        choices=("process", "oci"),
        default="process",
        help="how the kubelet runs a notebook pod: `process` (default: a local process from "
        "this checkout's notebook environment) or `oci` (a container from the built "
        "notebook-cpu image, with runc, in a network namespace of its own; needs root, "
        "`make system` and `make images`)",
    )
    parser.add_argument(
        "--images",
        default=str(ROOT / ".tools" / "images" / "oci"),
        help="with --runtime oci: the folder of OCI image layouts `make images` wrote",
    )
    parser.add_argument(
        "--gateway-entry",
        action="store_true",
        help="with --gateway, each gateway also serves its region's entry point for browsers "
        "on https://localhost:<port> (another host than the hub's 127.0.0.1), so that region's "
        "notebook traffic skips the hub's proxy",
    )
    args = parser.parse_args(argv)
    if args.gateway and not args.region_cluster:
        print("--gateway needs at least one --region-cluster", file=sys.stderr)
        return 2
    if args.gateway_entry and not args.gateway:
        print("--gateway-entry needs --gateway", file=sys.stderr)
        return 2
    if args.runtime == "oci" and args.region_cluster:
        # Each cluster's pod network is its own bridge and subnet; the hub listens on one.
        print(
            "--runtime oci runs the hub's own cluster only, not --region-cluster", file=sys.stderr
        )
        return 2

    policy = Path(args.policy).resolve()
    try:
        loaded = load_policy(policy).policy
        inventory = load_inventory(args.nodes)
        inventory, regional = split_inventory(inventory, loaded, args.region_cluster)
    except (PolicyError, InventoryError, RegionalSandboxError) as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.audit_store not in ("sqlite", "postgresql") and not is_postgres_url(args.audit_store):
        print(
            f"--audit-store: {args.audit_store!r} is not `sqlite`, `postgresql` "
            "or a postgresql:// URL",
            file=sys.stderr,
        )
        return 2
    state = Path(args.state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    images: Path | None = None
    if args.runtime == "oci":
        images = Path(args.images).resolve()
        try:
            policy = policy_with_images(policy, check_oci(images), state / "policy-images.yaml")
        except RuntimeUnavailable as exc:
            print(exc, file=sys.stderr)
            return 1
    key = state / "audit-hmac-key"
    if not key.exists():
        key.write_text(secrets.token_hex(32))
        key.chmod(0o600)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    started = time.monotonic()
    users = [
        {"sub": u.sub, "preferred_username": u.sub, "groups": list(u.groups), "country": u.country}
        for u in DEMO_USERS
    ]
    provider = OidcProvider(users, state / "oidc.log")
    with contextlib.ExitStack() as running:
        # Unwound last to first: hub, Kubernetes, identity provider, PostgreSQL.
        running.callback(print, "  Stopped.", flush=True)
        store = ""
        if args.audit_store == "postgresql":
            store = running.enter_context(LocalPostgres()).url
        elif is_postgres_url(args.audit_store):
            store = args.audit_store
        running.callback(provider.stop)
        # With containers, each pod has a network namespace of its own (kube/podnet.py).
        containers = {"pod_network": True, "images": images} if images else {}
        cluster = running.enter_context(Cluster(inventory, state / "kube", **containers))
        regional_clusters = {
            region: running.enter_context(Cluster(nodes, state / f"kube-{region}", **containers))
            for region, nodes in regional.items()
        }
        hub_url = f"http://127.0.0.1:{args.port}"
        gateways = (
            start_gateways(
                regional_clusters,
                state,
                running.callback,
                hub_url=hub_url if args.gateway_entry else None,
            )
            if args.gateway
            else {}
        )
        if regional_clusters:
            policy = policy_with_clusters(
                policy,
                {r: c.kubeconfig for r, c in regional_clusters.items()},
                state / "policy.yaml",
                {r: g.url for r, g in gateways.items()},
                {r: g.public_url for r, g in gateways.items() if g.public_url},
            )
        env = {"KUBECONFIG": str(cluster.kubeconfig), "JUPYTERHUB_CRYPT_KEY": _crypt_key(state)}
        config = hub_config(
            issuer=provider.issuer,
            port=args.port,
            policy=policy,
            cluster=cluster,
            state=state,
            store=store,
        ) + (gateway_hub_config(state) if gateways else "")
        if images is not None and cluster.network is not None:
            config += container_hub_config(cluster.network.host_ip)
        if args.gateway_entry:
            # The entry point sends browsers back to the hub to log in: it must know its URL.
            config += f"c.JupyterHub.public_url = {hub_url + '/'!r}\n"
        running.callback(
            print, "\n  Stopping: hub, notebook servers, Kubernetes, identity provider…", flush=True
        )
        hub = Hub(state / "hub", config, env=env, port=args.port)
        running.callback(hub.stop)
        print(
            banner(
                hub.url,
                provider.issuer,
                cluster,
                state,
                store or str(state / "audit.sqlite"),
                regions="".join(
                    f"  Region {region!r} runs in its own emulated cluster "
                    f"{cluster_name(region)!r}: {other.server} (KUBECONFIG={other.kubeconfig});\n"
                    + (
                        f"  its servers are reached through its gateway {gateways[region].url}"
                        f" (log: {gateways[region].log_path});\n"
                        if region in gateways
                        else ""
                    )
                    + (
                        f"  its users' browsers reach their servers at its entry point "
                        f"{gateways[region].public_url} (certificate from the sandbox CA "
                        f"{state / 'tls' / 'entry' / 'ca.pem'});\n"
                        if region in gateways and gateways[region].public_url
                        else ""
                    )
                    + f"  the hub reads the policy {policy}.\n\n"
                    for region, other in regional_clusters.items()
                ),
            )
        )

        print(
            f"  (started in {time.monotonic() - started:.1f} s; hub log: {hub.log_path})",
            flush=True,
        )
        while not stop.wait(1.0):
            if hub.process.poll() is not None:
                print(
                    f"jupyterhub exited ({hub.process.returncode}); see {hub.log_path}",
                    file=sys.stderr,
                )
                return 1
        return 0


def _gateway_certificates(state: Path) -> dict[str, dict[str, Path]]:
    """A CA and certificate for the gateways, another for the hub's client certificate, and
    one for the gateways' entry points (``localhost``)."""
    return {
        name: local_certificates(state / "tls" / name, common_name=f"sandbox {name} CA")
        for name in ("gateway", "hub-client", "entry")
    }


def start_gateways(
    clusters: dict[str, Cluster],
    state: Path,
    on_exit: Callable[..., Any],
    *,
    hub_url: str | None = None,
) -> dict[str, Gateway]:
    """A ``sovereign-gateway`` process per regional cluster, each stopped by ``on_exit``;
    with ``hub_url`` (the hub's), each also serves its region's entry point."""
    certs = _gateway_certificates(state)
    gateways = {}
    for region, cluster in clusters.items():
        gateway = Gateway(
            cluster, certs["gateway"], certs["hub-client"]["ca"], state / f"gateway-{region}.log",
            entry_tls=certs["entry"] if hub_url is not None else None, hub_url=hub_url or "",
        )  # fmt: skip
        on_exit(gateway.stop)
        gateways[region] = gateway
    return gateways


def gateway_hub_config(state: Path) -> str:
    """Config lines giving the hub's proxy and HTTP client the gateway credential."""
    client, ca = state / "tls" / "hub-client", state / "tls" / "gateway" / "ca.pem"
    return (
        "\nfrom sovereign_hub.gateway.hub import GatewayTLS, configure_hub\n"
        f"configure_hub(c, GatewayTLS(cert={str(client / 'cert.pem')!r}, "
        f"key={str(client / 'key.pem')!r}, ca={str(ca)!r}), [{str(CHP)!r}])\n"
    )


def _crypt_key(state: Path) -> str:
    path = state / "crypt-key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


if __name__ == "__main__":
    sys.exit(main())
