"""The gateway admits only the hub proxy's certificate when given its name (``--client-name``),
not every certificate its client CA signed; and the hub trusts only the gateways' CA.

Real TLS on loopback, with a CA made here that signs several client certificates (the
sandbox's CA keeps no key, so it signs one certificate only).
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sovereign_hub.gateway.clients import admitted
from sovereign_hub.gateway.hub import GatewayTLS, client_context
from sovereign_hub.gateway.proxy import make_app, server_context
from sovereign_hub.gateway.routes import RouteTable
from sovereign_hub.sandbox.tls import local_certificates


class CA:
    """A CA in ``directory`` that signs leaf certificates named as asked."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.path = directory / "ca.pem"
        self.path.write_bytes(self._sign(self.name, self.key, ca=True, dns=()).public_bytes(
            serialization.Encoding.PEM
        ))  # fmt: skip

    def _sign(self, subject: x509.Name, key, *, ca: bool, dns, ips=()) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ip) for ip in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def leaf(self, label: str, *, cn: str, dns=(), ips=()) -> tuple[str, str]:
        """(certificate, key) paths of a new leaf certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        cert = self._sign(subject, key, ca=False, dns=dns, ips=ips)
        cert_path, key_path = self.directory / f"{label}.crt", self.directory / f"{label}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))  # fmt: skip
        return str(cert_path), str(key_path)


def install(pair: tuple[str, str], cert: Path, key: Path) -> None:
    """Put a (certificate, key) pair at ``cert`` and ``key`` as a Secret volume does: each a
    new file renamed over the old."""
    for source, target in zip(pair, (cert, key), strict=True):
        new = target.with_suffix(".new")
        new.write_bytes(Path(source).read_bytes())
        os.replace(new, target)


@pytest.mark.parametrize(
    ("peercert", "allowed", "ok"),
    [
        ({"subjectAltName": (("DNS", "hub-proxy"),)}, {"hub-proxy"}, True),
        ({"subjectAltName": (("DNS", "Hub-Proxy"),)}, {"hub-proxy"}, True),
        ({"subjectAltName": (("DNS", "notebook"),)}, {"hub-proxy"}, False),
        ({"subject": ((("commonName", "hub-proxy"),),)}, {"hub-proxy"}, True),
        # A certificate with DNS names is known by them, not by its common name.
        (
            {"subject": ((("commonName", "hub-proxy"),),), "subjectAltName": (("DNS", "other"),)},
            {"hub-proxy"},
            False,
        ),
        (None, {"hub-proxy"}, False),
        (None, set(), True),
        ({"subjectAltName": (("DNS", "anything"),)}, set(), True),
    ],
)
def test_admitted_by_dns_names_or_else_the_common_name(peercert, allowed, ok):
    assert admitted(peercert, allowed) is ok


@pytest.fixture
def pki(tmp_path):
    """(client CA, the gateway's server certificate and its CA)."""
    clients = CA(tmp_path / "clients", "hub client CA")
    server = local_certificates(tmp_path / "server", common_name="gateway CA")
    return clients, server


async def _status(port: int, server_ca: Path, cert: tuple[str, str]) -> int:
    context = ssl.create_default_context(cafile=str(server_ca))
    context.load_cert_chain(*cert)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.get(f"https://127.0.0.1:{port}/user/nobody/") as response,
    ):
        return response.status


async def _serve(pki, names) -> tuple[web.AppRunner, int]:
    clients, server = pki
    context = server_context(str(server["cert"]), str(server["key"]), str(clients.path))
    runner = web.AppRunner(make_app(RouteTable(), names))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def test_a_same_ca_certificate_with_another_name_is_refused_and_logged(pki, caplog):
    clients, server = pki
    hub = clients.leaf("hub", cn="hub proxy", dns=("hub-proxy",))
    other = clients.leaf("other", cn="hub-proxy", dns=("notebook-signer",))
    runner, port = await _serve(pki, ["hub-proxy"])
    try:
        with caplog.at_level(logging.WARNING, logger="sovereign_hub.gateway.proxy"):
            assert await _status(port, server["ca"], other) == 403
        assert await _status(port, server["ca"], hub) == 503  # admitted: no such server yet
    finally:
        await runner.cleanup()
    (record,) = [r for r in caplog.records if "refused a client certificate" in r.message]
    assert "notebook-signer" in record.message
    assert "PRIVATE KEY" not in caplog.text


async def test_without_names_every_certificate_the_ca_signed_is_admitted(pki):
    clients, server = pki
    runner, port = await _serve(pki, [])
    try:
        assert await _status(port, server["ca"], clients.leaf("any", cn="anyone")) == 503
    finally:
        await runner.cleanup()


async def test_the_hubs_client_trusts_only_the_gateways_ca_not_the_systems(tmp_path, monkeypatch):
    """A server whose certificate a CA in the system's trust store signed is not a gateway:
    the hub's readiness check refuses it, as configurable-http-proxy's --client-ssl-ca does."""
    system = CA(tmp_path / "system", "a public CA")
    gateways = CA(tmp_path / "gateways", "gateways CA")
    monkeypatch.setenv("SSL_CERT_FILE", str(system.path))  # the "system" trust store
    hub_cert = gateways.leaf("hub", cn="hub-proxy", dns=("hub-proxy",))
    context = client_context(GatewayTLS(cert=hub_cert[0], key=hub_cert[1], ca=str(gateways.path)))

    async def status_of(ca: CA) -> int:
        import ipaddress

        cert, key = ca.leaf("server", cn="127.0.0.1", ips=(ipaddress.ip_address("127.0.0.1"),))
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert, key)

        async def up(request: web.Request) -> web.Response:
            return web.Response(text="up")

        app = web.Application()
        app.router.add_get("/", up)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
                session.get(f"https://127.0.0.1:{port}/") as response,
            ):
                return response.status
        finally:
            await runner.cleanup()

    assert await status_of(gateways) == 200
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await status_of(system)


async def gateway_status(context: ssl.SSLContext, port: int) -> int:
    """What the gateway on ``port`` answers the hub's client (``context``) for a server path."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        session.get(f"https://127.0.0.1:{port}/user/nobody/") as response,
    ):
        return response.status


async def test_the_hubs_client_uses_a_renewed_certificate_from_the_next_connection(pki, tmp_path):
    """The Secret's files are swapped (as a Secret volume swaps them) for a certificate the
    gateway's client CA signed: the hub's next connection presents it, with no restart."""
    clients, server = pki
    stranger = CA(tmp_path / "old", "a CA the gateway does not trust")
    folder = tmp_path / "hub-client"
    folder.mkdir()
    cert, key = folder / "tls.crt", folder / "tls.key"
    install(stranger.leaf("old", cn="hub-proxy", dns=("hub-proxy",)), cert, key)
    context = client_context(GatewayTLS(cert=str(cert), key=str(key), ca=str(server["ca"])))
    runner, port = await _serve(pki, ["hub-proxy"])

    try:
        with pytest.raises(aiohttp.ClientError):  # refused in the handshake
            await gateway_status(context, port)
        install(clients.leaf("renewed", cn="hub-proxy", dns=("hub-proxy",)), cert, key)
        assert await gateway_status(context, port) == 503  # admitted: no such server yet
    finally:
        await runner.cleanup()


async def test_the_hubs_client_keeps_its_pair_while_a_swap_is_half_done(pki, tmp_path):
    """A certificate swapped in before its key (a mismatched pair) is not loaded: the hub's
    connections keep presenting the old pair, and the new one once the key follows."""
    clients, server = pki
    folder = tmp_path / "hub-client"
    folder.mkdir()
    cert, key = folder / "tls.crt", folder / "tls.key"
    install(clients.leaf("old", cn="hub-proxy", dns=("hub-proxy",)), cert, key)
    context = client_context(GatewayTLS(cert=str(cert), key=str(key), ca=str(server["ca"])))
    runner, port = await _serve(pki, ["hub-proxy"])

    try:
        assert await gateway_status(context, port) == 503  # admitted: no such server yet
        # The new certificate names no admitted client, so the gateway tells which pair came.
        new_cert, new_key = clients.leaf("new", cn="not-admitted", dns=("not-admitted",))
        install((new_cert, str(key)), cert, key)  # the certificate first, the old key kept
        assert context.renew() is False
        assert await gateway_status(context, port) == 503  # still the old pair
        assert await gateway_status(context, port) == 503
        install((new_cert, new_key), cert, key)
        assert (
            await gateway_status(context, port) == 403
        )  # the new pair, whole, from the next connection
    finally:
        await runner.cleanup()
