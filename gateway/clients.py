"""Which client certificates the gateway serves: a pure decision on the peer's names.

The TLS handshake already proved the client holds a certificate the client CA
signed. A CA often signs more than the hub's proxy (an organisation's internal
CA, say), so ``--client-name`` narrows it to certificates naming one of the
allowed names: their DNS subject alternative names, or, for a certificate with
none, its subject's common name (the order hostname checks use, RFC 6125 6.4.4).
With no names given, every certificate the CA signed is let in, as before; the
gateway says so at start-up.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def peer_names(peercert: dict[str, Any] | None) -> tuple[str, ...]:
    """The names a peer certificate (``ssl.SSLSocket.getpeercert()``'s dict) goes by: its
    DNS subject alternative names, or its common names when it has none."""
    if not peercert:
        return ()
    dns = tuple(value for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS")
    if dns:
        return dns
    return tuple(
        value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"
    )


def admitted(peercert: dict[str, Any] | None, allowed: Collection[str]) -> bool:
    """Whether a peer with ``peercert`` may use the gateway: always when ``allowed`` is
    empty (the CA alone decides), else when one of its names is allowed (exactly, case
    aside, as DNS names compare)."""
    if not allowed:
        return True
    wanted = {name.lower() for name in allowed}
    return any(name.lower() in wanted for name in peer_names(peercert))
