"""Run the emulated cluster until interrupted: ``python -m sovereign_hub.sandbox.kube``."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

from .cluster import Cluster
from .inventory import InventoryError, load_inventory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sovereign_hub.sandbox.kube",
        description="Emulated Kubernetes (API server, scheduler, process kubelet) on 127.0.0.1.",
    )
    parser.add_argument("--nodes", required=True, help="node inventory YAML")
    parser.add_argument(
        "--state-dir", help="where pods' logs and volumes live (default: a temporary directory)"
    )
    parser.add_argument(
        "--api-only",
        action="store_true",
        help="run only the API server, with no nodes, scheduler or kubelet: a stand-in for a "
        "real API server, e.g. for SOVEREIGN_TEST_KUBECONFIG",
    )
    args = parser.parse_args(argv)
    try:
        inventory = load_inventory(args.nodes)
    except InventoryError as exc:
        print(exc, file=sys.stderr)
        return 1
    state = Path(args.state_dir or tempfile.mkdtemp(prefix="sovereign-kube-"))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Cluster(inventory, state, real_nodes=args.api_only) as cluster:
        print("Kubernetes is EMULATED: API server, scheduler and process kubelet on this machine.")
        print(f"API server: {cluster.server}")
        print(f"kubeconfig: {cluster.kubeconfig}")
        print(f"nodes:      {', '.join(cluster.nodes)}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
