"""A real ``sovereign-gateway`` process on loopback, serving mutual TLS, for the tests and
the benchmarks (as the regional chart runs it, with ``--kubeconfig`` instead of a
ServiceAccount)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import requests

from sovereign_hub.processes import stop_process

from .hubprocess import BIN, free_port
from .kube.cluster import Cluster


class Gateway:
    """``sovereign-gateway`` as a process for ``cluster``'s namespace: its server certificate
    and key are ``tls["cert"]``/``tls["key"]``, and it admits clients whose certificate
    ``client_ca`` signed (``extra_args``: more options, such as ``--client-name``). Returns
    once the gateway has listed the namespace's pods."""

    def __init__(
        self,
        cluster: Cluster,
        tls: dict[str, Path],
        client_ca: Path,
        log: Path,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port, self.health = free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        argv = [
            str(BIN / "sovereign-gateway"),
            "--namespace", cluster.namespace,
            "--kubeconfig", str(cluster.kubeconfig),
            "--ip", "127.0.0.1",
            "--port", str(self.port),
            "--health-port", str(self.health),
            "--tls-cert", str(tls["cert"]),
            "--tls-key", str(tls["key"]),
            "--client-ca", str(client_ca),
            *extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(  # noqa: S603 - our venv's own entry point
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited:\n{log.read_text()}")
            try:
                if requests.get(f"http://127.0.0.1:{self.health}/healthz", timeout=5).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"the gateway did not list pods within 60 s:\n{log.read_text()}")

    def stop(self) -> None:
        stop_process(self.process, timeout=30)
        self._log.close()
