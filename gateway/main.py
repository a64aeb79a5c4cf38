"""``sovereign-gateway``: run the per-region gateway.

It reads pods from the API server of the cluster it runs in (its
ServiceAccount, or ``--kubeconfig``), serves HTTPS on ``--port`` to clients
holding a certificate signed by ``--client-ca``, and answers the kubelet's
probes on ``--health-port`` over plain HTTP. Renewed certificate files are
picked up within 30 seconds, without a restart.
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

from .proxy import AccessLog, RenewedFiles, health_app, make_app, server_context
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
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster ServiceAccount)")
    p.add_argument("--base-url", default="/", help="the hub's base URL (default /)")
    p.add_argument("--selector", default=SELECTOR, help=f"pod label selector ({SELECTOR})")
    return p


async def _api(kubeconfig: str | None) -> ApiClient:
    if kubeconfig:
        return await kube_config.new_client_from_config(config_file=kubeconfig)
    kube_config.load_incluster_config()
    return ApiClient()


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
    async with await _api(args.kubeconfig) as client:
        follower = PodFollower(CoreV1Api(client), args.namespace, table, selector=args.selector)
        following = asyncio.create_task(follower.run())
        renewing = asyncio.create_task(
            RenewedFiles(tls, args.tls_cert, args.tls_key, args.client_ca).follow()
        )
        runners = []
        try:
            main = web.AppRunner(make_app(table, args.client_name), access_log_class=AccessLog)
            health = web.AppRunner(health_app(follower.synced.is_set), access_log=None)
            for runner, port, context in ((main, args.port, tls), (health, args.health_port, None)):
                await runner.setup()
                runners.append(runner)
                await web.TCPSite(runner, args.ip, port, ssl_context=context).start()
            log.info(
                "gateway for namespace %s on https://%s:%s", args.namespace, args.ip, args.port
            )
            await stop.wait()
        finally:
            for task in (following, renewing):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for runner in runners:
                await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
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
