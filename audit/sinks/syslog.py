"""Syslog for SIEMs: RFC 5424 messages over TCP, optionally TLS (RFC 5425).

Frames use octet counting (RFC 6587 section 3.4.1, the framing RFC 5425
requires), so a message may hold any byte. Each record is one message:

- PRI: the configured facility (default ``authpriv``), severity ``warning``
  for refusals and ``notice`` for everything else;
- HOSTNAME the hub instance, APP-NAME ``sovereign-hub``, MSGID the event
  family (``spawn-denied``);
- STRUCTURED-DATA ``[<sd_id> id="…" seq="…" mac="…"]`` so a SIEM can
  deduplicate and an auditor can match a message to the chain;
- MSG the full record as JSON, after a UTF-8 BOM as RFC 5424 asks.

TCP syslog has no application acknowledgement: a batch counts as delivered
once the kernel accepted every byte. A receiver that dies just after may lose
what it had buffered; a store with acknowledgements (PostgreSQL, or a
relay speaking RELP) is the trail of record, syslog the SIEM's copy.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
from typing import Any, ClassVar

from ..schemas import family
from .base import Sink, SinkConfigError

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}  # fmt: skip
WARNING, NOTICE = 4, 5
REFUSALS = {"spawn-denied", "login-denied", "spawn-failed"}
BOM = "\ufeff"


def sd_escape(value: str) -> str:
    """A PARAM-VALUE with ``"``, ``\\`` and ``]`` escaped (RFC 5424 section 6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def header_token(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit`` characters."""
    text = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


def format_message(record: dict[str, Any], facility: int, sd_id: str) -> bytes:
    event = family(record["schema"])
    severity = WARNING if event in REFUSALS else NOTICE
    sd = (
        f'[{sd_id} id="{sd_escape(record["id"])}" seq="{record["seq"]}" '
        f'mac="{sd_escape(record["mac"])}"]'
    )
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    line = (
        f"<{facility * 8 + severity}>1 {record['time']} {header_token(record['hub'], 255)} "
        f"sovereign-hub - {header_token(event, 32)} {sd} {BOM}{body}"
    )
    return line.encode()


def frame(message: bytes) -> bytes:
    return str(len(message)).encode() + b" " + message


class SyslogSink(Sink):
    """Sends records to a syslog receiver (rsyslog, syslog-ng, a SIEM's collector)."""

    name = "syslog"
    option_help: ClassVar[dict[str, str]] = {
        "host": "The receiver's host name or address.",
        "port": "The receiver's TCP port (default 6514, syslog over TLS).",
        "tls": "Speak TLS (RFC 5425); false: plain TCP, for a receiver on the same node only.",
        "ca_file": "CA bundle for the receiver's certificate (default: the system's).",
        "cert_file": "Client certificate for mutual TLS; goes with `key_file`.",
        "key_file": "Client key for mutual TLS; goes with `cert_file`.",
        "server_name": "Name the receiver's certificate must carry (default: `host`).",
        "facility": f"Syslog facility, one of {', '.join(f'`{f}`' for f in FACILITIES)}.",
        "sd_id": "Structured-data id, `name@<private enterprise number>`.",
        "timeout": "Seconds to wait for the connection and each send (default 10).",
    }

    def __init__(
        self,
        host: str,
        port: int = 6514,
        tls: bool = True,
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
        server_name: str = "",
        facility: str = "authpriv",
        sd_id: str = "sovereignHub@32473",
        timeout: float = 10.0,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if facility not in FACILITIES:
            raise SinkConfigError(
                f"audit sink {self.name}: facility: {facility!r} is not one of "
                f"{', '.join(FACILITIES)}"
            )
        if "@" not in sd_id or not header_token(sd_id, 32) == sd_id:
            raise SinkConfigError(
                f"audit sink {self.name}: sd_id: {sd_id!r} must be name@<private enterprise "
                "number>, printable ASCII without spaces, at most 32 characters"
            )
        if bool(cert_file) != bool(key_file):
            raise SinkConfigError(
                f"audit sink {self.name}: cert_file and key_file go together (client TLS)"
            )
        self.host, self.port, self.tls = host, int(port), bool(tls)
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.server_name = server_name or host
        self.facility = FACILITIES[facility]
        self.sd_id = sd_id
        self.timeout = timeout
        self._sock: socket.socket | None = None

    def open(self) -> None:
        self.close()
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if self.tls:
            context = ssl.create_default_context(cafile=self.ca_file or None)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
            sock = context.wrap_socket(sock, server_hostname=self.server_name)
        self._sock = sock

    def _peer_closed(self) -> bool:
        # A syslog receiver never sends: anything readable is its FIN (or a TLS
        # close_notify). Checking before each batch keeps a batch from going
        # into a connection the receiver has already closed.
        assert self._sock is not None  # noqa: S101
        readable, _, _ = select.select([self._sock], [], [], 0)
        return bool(readable)

    def deliver(self, records: list[dict[str, Any]]) -> None:
        if self._sock is None or self._peer_closed():
            self.open()
        assert self._sock is not None  # noqa: S101
        payload = b"".join(frame(format_message(r, self.facility, self.sd_id)) for r in records)
        try:
            self._sock.sendall(payload)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
