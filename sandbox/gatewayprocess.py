"""A real ``sovereign-gateway`` process on loopback, serving mutual TLS, for the tests and
the benchmarks (as the regional chart runs it, with ``--kubeconfig`` instead of a
ServiceAccount)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import requests

from sovereign_hub.processes import stop_process

from .hubprocess import BIN, free_port
from .kube.cluster import Cluster


class Gateway:
    """``sovereign-gateway`` as a process for ``cluster``'s namespace: its server certificate
    and key are ``tls["cert"]``/``tls["key"]``, and it admits clients whose certificate
    ``client_ca`` signed (``extra_args``: more options, such as ``--client-name``). With
    ``entry_tls`` (a certificate for ``localhost``) it also serves the region's entry point
    for browsers at :attr:`public_url`, ``https://localhost:<port>``: another host than the
    hub's ``127.0.0.1`` to a browser, so their cookies stay apart, as on two real hosts;
    ``hub_url`` is the hub's, named to browsers it cannot serve. With
    ``serviceaccount_dir`` (a ``token`` and ``ca.crt``) it logs in as a pod in the cluster
    does, not with the cluster's kubeconfig. Returns once the gateway has listed the
    namespace's pods."""

    def __init__(
        self,
        cluster: Cluster,
        tls: dict[str, Path],
        client_ca: Path,
        log: Path,
        extra_args: Sequence[str] = (),
        *,
        entry_tls: dict[str, Path] | None = None,
        hub_url: str = "",
        serviceaccount_dir: Path | None = None,
    ) -> None:
        self.port, self.health = free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.public_url: str | None = None
        if entry_tls is not None:
            entry_port = free_port()
            self.public_url = f"https://localhost:{entry_port}"
            extra_args = [
                *extra_args,
                "--public-ip", "127.0.0.1",
                "--public-port", str(entry_port),
                "--public-tls-cert", str(entry_tls["cert"]),
                "--public-tls-key", str(entry_tls["key"]),
                "--public-url", self.public_url,
                "--hub-url", hub_url,
            ]  # fmt: skip
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        argv = [
            str(BIN / "sovereign-gateway"),
            "--namespace", cluster.namespace,
            *(("--serviceaccount-dir", str(serviceaccount_dir)) if serviceaccount_dir
              else ("--kubeconfig", str(cluster.kubeconfig))),
            "--ip", "127.0.0.1",
            "--port", str(self.port),
            "--health-port", str(self.health),
            "--tls-cert", str(tls["cert"]),
            "--tls-key", str(tls["key"]),
            "--client-ca", str(client_ca),
            *extra_args,
        ]  # fmt: skip
        env = dict(os.environ)
        if serviceaccount_dir is not None:  # as the kubelet sets them in every container
            server = urlsplit(cluster.server)
            env["KUBERNETES_SERVICE_HOST"] = str(server.hostname)
            env["KUBERNETES_SERVICE_PORT"] = str(server.port)
        self.process = subprocess.Popen(  # noqa: S603 - our venv's own entry point
            argv,
            env=env,
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
