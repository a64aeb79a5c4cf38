"""Test-only servers the audit sinks talk to: a real rsyslogd, and an HTTP receiver.

Grafana Loki and OpenSearch have no server in these machines' registries, so
their sinks are tested against :class:`Receiver`, which records each request
and answers as the real API documents (contract tests).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sovereign_hub.processes import stop_process
from sovereign_hub.sandbox.hubprocess import free_port
from sovereign_hub.sandbox.tls import local_certificates


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = Callable[[Request], tuple[int, dict[str, Any] | None]]


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records requests; ``answer`` decides each reply."""

    answer: Answer = lambda _request: (204, None)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = Request(
                    "POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )  # fmt: skip
                receiver.requests.append(request)
                status, body = receiver.answer(request)
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# One line per message, fields split by a marker no test message contains.
SEP = "|~|"
TEMPLATE = SEP.join(
    ["%pri%", "%timereported:::date-rfc3339%", "%hostname%", "%app-name%", "%msgid%",
     "%structured-data%", "%msg%"]
) + "\\n"  # fmt: skip


class Rsyslog:
    """A real rsyslogd (Debian's) with a plain TCP and a TLS input, writing what it parses."""

    def __init__(self, directory: Path, tcp_port: int = 0, tls_port: int = 0) -> None:
        binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        if not Path(binary).exists():
            raise FileNotFoundError("rsyslogd is not installed: `apt-get install rsyslog`")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.tls = local_certificates(
            directory / "tls", common_name="test CA", days=1
        )  # anew on a restart: the sinks trust the CA file
        self.tcp_port, self.tls_port = tcp_port or free_port(), tls_port or free_port()
        self.output = directory / "messages.log"
        self.output.touch()
        conf = directory / "rsyslog.conf"
        conf.write_text(
            f"""
global(workDirectory="{directory}" maxMessageSize="256k"
       defaultNetstreamDriverCAFile="{self.tls["ca"]}"
       defaultNetstreamDriverCertFile="{self.tls["cert"]}"
       defaultNetstreamDriverKeyFile="{self.tls["key"]}")
module(load="imtcp" maxSessions="50")
template(name="fields" type="string" string="{TEMPLATE}")
ruleset(name="audit") {{
  action(type="omfile" file="{self.output}" template="fields" flushOnTXEnd="on"
         asyncWriting="off")
}}
input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}" ruleset="audit")
input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" ruleset="audit"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")
"""
        )
        self.process = subprocess.Popen(
            [binary, "-n", "-f", str(conf), "-i", str(directory / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL,
            stderr=open(directory / "rsyslogd.err", "w"),  # noqa: SIM115
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        import socket

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.directory / "rsyslogd.err").read_text())
            with socket.socket() as a, socket.socket() as b:
                if (
                    a.connect_ex(("127.0.0.1", self.tcp_port)) == 0
                    and b.connect_ex(("127.0.0.1", self.tls_port)) == 0
                ):
                    return
            time.sleep(0.1)
        raise RuntimeError("rsyslogd did not listen")

    def messages(self) -> list[dict[str, str]]:
        keys = ("pri", "time", "hostname", "app", "msgid", "sd", "msg")
        return [
            dict(zip(keys, line.split(SEP, 6), strict=True))
            for line in self.output.read_text(encoding="utf-8").splitlines()
            if line
        ]

    def stop(self) -> None:
        stop_process(self.process, timeout=10)
