"""A throwaway certificate authority and a server certificate for 127.0.0.1.

The emulated API server serves HTTPS with these, as every real one does:
Kubernetes' Go clients (kubectl, Helm) send credentials over TLS only. The
tests' TLS receivers use them too.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def local_certificates(
    directory: Path, *, common_name: str = "Sovereign Hub local CA", days: int = 30
) -> dict[str, Path]:
    """Write ``ca.pem``, ``cert.pem`` and ``key.pem`` (mode 0600) to ``directory``.

    The server certificate names ``localhost`` and ``127.0.0.1``. The CA's key is
    not kept, so nothing else can ever be signed by it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def sign(subject: x509.Name, key: Any, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    key = ec.generate_private_key(ec.SECP256R1())
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    paths = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(sign(ca_name, ca_key, ca=True).public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(
        sign(server_name, key, ca=False).public_bytes(serialization.Encoding.PEM)
    )
    paths["key"].touch(mode=0o600)
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths
