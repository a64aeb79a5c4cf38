"""``sovereign-gateway``: run the per-region gateway.

It reads pods from the API server of the cluster it runs in (its
ServiceAccount, or ``--kubeconfig``), serves HTTPS on ``--port`` to clients
holding a certificate signed by ``--client-ca``, and answers the kubelet's
probes on ``--health-port`` over plain HTTP. With ``--public-port`` it also
serves the region's entry point for browsers (:mod:`.entry`). Renewed
certificate files are picked up within 30 seconds, without a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from aiohttp import web
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, CoreV1Api

from .entry import make_entry_app
from .incluster import SERVICEACCOUNT_DIR, incluster_client
from .proxy import (
    AccessLog,
    RenewedFiles,
    health_app,
    make_app,
    public_context,
    server_context,
)
from .routes import RouteTable
from .watch import SELECTOR, PodFollower

log = logging.getLogger("sovereign_hub.gateway")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sovereign-gateway",
        description="Route /user/<name>/ to that user's notebook pod in this cluster, for the "
        "hub's proxy only (mutual TLS).",
    )
    p.add_argument("--namespace", required=True, help="the namespace the hub spawns into")
    p.add_argument("--ip", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")  # noqa: S104
    p.add_argument("--port", type=int, default=8443, help="HTTPS port (default 8443)")
    p.add_argument("--health-port", type=int, default=8081, help="plain-HTTP /healthz port")
    p.add_argument("--tls-cert", required=True, help="the gateway's certificate (PEM)")
    p.add_argument("--tls-key", required=True, help="its private key (PEM)")
    p.add_argument(
        "--client-ca", required=True, help="CA (PEM) that signed the hub's client certificate"
    )
    p.add_argument(
        "--client-name",
        action="append",
        default=[],
        metavar="NAME",
        help="admit only client certificates whose DNS subject alternative name (or, with "
        "none, common name) is NAME; repeat for more names. Without it, every certificate "
        "the client CA signed is admitted",
    )
    p.add_argument(
        "--public-port",
        type=int,
        help="serve the region's entry point for browsers on this HTTPS port (no client "
        "certificate: each notebook server authenticates with the hub's OAuth). Off without it",
    )
    p.add_argument("--public-ip", help="address of the entry point (default: --ip)")
    p.add_argument("--public-tls-cert", help="the entry point's certificate (PEM)")
    p.add_argument("--public-tls-key", help="its private key (PEM)")
    p.add_argument(
        "--public-url",
        default="",
        help="the entry point's URL as browsers reach it (https://host[:port]): a browser's "
        "visit through the hub's proxy to a running server is redirected there",
    )
    p.add_argument(
        "--hub-url", default="", help="the hub's public URL, named to browsers it cannot serve"
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster ServiceAccount)")
    p.add_argument(
        "--serviceaccount-dir",
        default=SERVICEACCOUNT_DIR,
        help="without --kubeconfig: the folder with the ServiceAccount's token and ca.crt "
        f"(default {SERVICEACCOUNT_DIR}); the API server is KUBERNETES_SERVICE_HOST and _PORT",
    )
    p.add_argument("--base-url", default="/", help="the hub's base URL (default /)")
    p.add_argument("--selector", default=SELECTOR, help=f"pod label selector ({SELECTOR})")
    return p


async def _api(args: argparse.Namespace) -> ApiClient:
    if args.kubeconfig:
        return await kube_config.new_client_from_config(config_file=args.kubeconfig)
    return incluster_client(args.serviceaccount_dir)


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set."""
    tls = server_context(args.tls_cert, args.tls_key, args.client_ca)
    if args.client_name:
        log.info("admitting client certificates named %s", ", ".join(args.client_name))
    else:
        log.warning(
            "no --client-name given: EVERY certificate the client CA signed is admitted; "
            "give the hub proxy's certificate name unless that CA signs nothing else"
        )
    table = RouteTable(args.base_url)
    async with await _api(args) as client:
        follower = PodFollower(CoreV1Api(client), args.namespace, table, selector=args.selector)
        following = asyncio.create_task(follower.run())
        renewed = [RenewedFiles(tls, args.tls_cert, args.tls_key, args.client_ca)]
        main = web.AppRunner(
            make_app(table, args.client_name, args.public_url), access_log_class=AccessLog
        )
        health = web.AppRunner(health_app(follower.synced.is_set), access_log=None)
        listeners = [(main, args.ip, args.port, tls), (health, args.ip, args.health_port, None)]
        if args.public_port is not None:
            public = public_context(args.public_tls_cert, args.public_tls_key)
            renewed.append(RenewedFiles(public, args.public_tls_cert, args.public_tls_key, None))
            entry = web.AppRunner(make_entry_app(table, args.hub_url), access_log_class=AccessLog)
            listeners.append((entry, args.public_ip or args.ip, args.public_port, public))
        renewing = [asyncio.create_task(files.follow()) for files in renewed]
        runners = []
        try:
            for runner, ip, port, context in listeners:
                await runner.setup()
                runners.append(runner)
                await web.TCPSite(runner, ip, port, ssl_context=context).start()
            log.info(
                "gateway for namespace %s on https://%s:%s", args.namespace, args.ip, args.port
            )
            await stop.wait()
        finally:
            for task in (following, *renewing):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for runner in runners:
                await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if args.public_port is not None and not (args.public_tls_cert and args.public_tls_key):
        p.error("--public-port needs --public-tls-cert and --public-tls-key")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(args, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
