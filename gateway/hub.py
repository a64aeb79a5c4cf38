"""The hub's side of the gateways: one client certificate, one CA bundle.

Two parts of the hub open connections to a region's gateway, and each takes
its TLS material once for all targets:

- configurable-http-proxy forwards users' requests; its ``--client-ssl-key``,
  ``--client-ssl-cert`` and ``--client-ssl-ca`` options give every https
  target (only gateways are: pods are reached over http) the hub's client
  certificate and verify the target's against the bundle;
- JupyterHub's own HTTP client asks a new server whether it is up
  (``JupyterHubHTTPClient.connector_options``, a documented setting).

So the credential is per hub, not per region: a regional gateway trusts the CA
that signed the hub's client certificate, and the hub trusts the CAs that
signed the gateways' certificates. A client certificate never reaches a
notebook pod: it is presented only in a TLS handshake, and only to https
targets, unlike a bearer header, which the proxy would add to every request.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayTLS:
    """Where the hub reads its gateway credential (the chart mounts them from a Secret)."""

    cert: str
    """The hub's client certificate (PEM), signed by the CA the gateways trust."""
    key: str
    """Its private key (PEM)."""
    ca: str
    """The CA bundle (PEM) that signed the gateways' server certificates."""


def proxy_args(tls: GatewayTLS) -> list[str]:
    """configurable-http-proxy's options to present ``tls.cert`` to https targets and verify
    them against ``tls.ca``."""
    return ["--client-ssl-key", tls.key, "--client-ssl-cert", tls.cert, "--client-ssl-ca", tls.ca]


class _ConfigContext(ssl.SSLContext):
    """An SSL context that can sit in traitlets config, and that takes renewed files.

    Traitlets deep-copies config values, and an SSL context cannot be copied (it is
    shared, as it is meant to be). This one is only a front: each new connection
    (``wrap_socket``, ``wrap_bio``: tornado's and asyncio's ways in) is made by the
    newest context built from the files. Before each, the files' (inode, mtime, size) are
    compared with those loaded, and on a change a NEW context is built from them and used
    from that connection on, with no restart (cert-manager, a Secret volume's swap).
    Nothing is ever loaded into a context in use: OpenSSL leaves a context it failed to
    load a mismatched pair into unable to connect, so a pair caught half-way (a key that
    does not match the certificate) fails only in the new context, the old one is kept,
    and the next connection tries again. A new CA bundle is added to those trusted (each
    new context trusts every bundle seen since the start); removing trust takes a restart
    of the hub.
    """

    _files: tuple[str, str, str] = ("", "", "")
    _seen: tuple[tuple[int, int, int], ...] = ()
    _bundles: tuple[str, ...] = ()
    _current: ssl.SSLContext | None = None

    def __deepcopy__(self, memo: dict[int, object]) -> _ConfigContext:
        return self

    def follow(self, tls: GatewayTLS) -> None:
        """Load ``tls``'s files now, and again whenever they change."""
        self._files = (tls.cert, tls.key, tls.ca)
        self._load()  # with nothing in use yet, a file that does not load raises

    def _stats(self) -> tuple[tuple[int, int, int], ...]:
        stats = []
        for path in self._files:
            info = os.stat(path)
            stats.append((info.st_ino, info.st_mtime_ns, info.st_size))
        return tuple(stats)

    def _load(self) -> bool:
        """Build a context from the files and use it; whether that worked."""
        try:
            now = self._stats()  # before reading: a change after this is seen next time
            cert, key, ca = self._files
            bundle = Path(ca).read_text()  # read once: what is trusted is what was read
            bundles = self._bundles if bundle in self._bundles else (*self._bundles, bundle)
            fresh = ssl.SSLContext(self.protocol)  # as this front: verifies peer and host name
            for pem in bundles:
                fresh.load_verify_locations(cadata=pem)
            fresh.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError, ValueError) as exc:  # a swap caught half-way
            log.warning("renewed gateway client files not loaded yet: %s", type(exc).__name__)
            if self._current is None:
                raise
            return False
        self._current, self._bundles, self._seen = fresh, bundles, now
        return True

    def renew(self) -> bool:
        """Build a new context if the files changed since last loaded; whether one was."""
        try:
            if self._stats() == self._seen:
                return False
        except OSError as exc:  # a file missing for a moment during a swap
            log.warning("renewed gateway client files not loaded yet: %s", type(exc).__name__)
            return False
        if not self._load():
            return False
        log.info("the hub's gateway client certificate was renewed: in use for new connections")
        return True

    def _in_use(self) -> ssl.SSLContext:
        self.renew()
        if self._current is None:
            raise RuntimeError("_ConfigContext used before follow()")
        return self._current

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        return self._in_use().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        return self._in_use().wrap_bio(*args, **kwargs)

    def get_ca_certs(self, binary_form: bool = False) -> Any:
        """The CAs the context in use trusts (this front itself loads none)."""
        return self._in_use().get_ca_certs(binary_form)


def client_context(tls: GatewayTLS) -> ssl.SSLContext:
    """The hub's HTTP client context: trusts only the gateways' CA bundle, with the hub's
    client certificate ready for a gateway that asks, both re-read when renewed.

    Only that bundle, not the system's CAs as well, for two reasons: a server the hub
    waits for must present a certificate from the gateways' CA, not any public one (a
    name in the system's trust store could otherwise pass for a gateway); and
    configurable-http-proxy's ``--client-ssl-ca`` likewise replaces Node's default CAs,
    so the readiness check and the proxy agree on what a gateway is. JupyterHub's HTTP
    client reaches nothing else over https in this setup (the proxy's API and the pods
    are plain http, or use ``internal_ssl``, which sets its own context).
    """
    context = _ConfigContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the peer and its host name
    context.follow(tls)
    return context


def configure_hub(c: Any, tls: GatewayTLS, proxy_command: list[str]) -> None:
    """Set the hub's config ``c`` to reach gateways with ``tls``: the proxy started as
    ``proxy_command`` plus :func:`proxy_args` (and restarted when the files are renewed:
    :mod:`sovereign_hub.renewingproxy`), and JupyterHub's HTTP client with
    :func:`client_context`."""
    c.ConfigurableHTTPProxy.command = [*proxy_command, *proxy_args(tls)]
    # The proxy reads the files once: restart it when they are renewed (by name, so this
    # module imports nothing of JupyterHub).
    c.JupyterHub.proxy_class = "sovereign_hub.renewingproxy.RenewingProxy"
    c.RenewingProxy.client_files = [tls.cert, tls.key, tls.ca]
    c.JupyterHubHTTPClient.connector_options = {"ssl": client_context(tls)}
