"""Ed25519 signing keys for checkpoints and retention records, named by key id.

The library is ``cryptography`` (the Python Cryptographic Authority's,
already installed with the hub for JWT checks): its Ed25519 keys are
OpenSSL's, and it reads and writes the PEM files operators keep in Secrets.
Ed25519 because signatures are small (64 bytes), signing is fast (tens of
microseconds, and only once per checkpoint) and there are no parameters to
get wrong, unlike ECDSA's nonces.

A key's id is derived from its public key (:func:`key_id`), so a verifier
holding several public keys (after a rotation) picks the right one from the
``key_id`` a signature names, and nothing needs configuring twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and what is expected."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "e-" + hashlib.sha256(raw).hexdigest()[:16]


class Signer:
    """Signs with one private key, read from a PEM file (PKCS#8, unencrypted)."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self.private = private
        self.key_id = key_id(private.public_key())

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read the signing key ({exc})") from None
        return cls.from_pem(data, source=str(path))

    @classmethod
    def from_pem(cls, data: bytes, *, source: str) -> Signer:
        """The key in PEM ``data``; errors name ``source`` (a file, or "stdin")."""
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{source}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            kind = type(key).__name__
            raise KeyFileError(f"{source}: an Ed25519 private key is needed, not {kind}")
        return cls(key)

    def public_pem(self) -> bytes:
        """The public key, as the PEM file verifiers pass to ``--public-key``."""
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, payload: bytes) -> str:
        return self.private.sign(payload).hex()


class PublicKeys:
    """Public keys by id: what anyone needs to check checkpoints and retention records."""

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self.keys = {key_id(k): k for k in keys}

    def __bool__(self) -> bool:
        return bool(self.keys)

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> PublicKeys:
        keys = []
        for path in paths:
            data = Path(path).read_bytes()
            try:
                key = serialization.load_pem_public_key(data)
            except ValueError:
                try:  # a private key file also gives its public key
                    key = serialization.load_pem_private_key(data, password=None).public_key()
                except (ValueError, TypeError) as exc:
                    raise KeyFileError(f"{path}: not a PEM public key ({exc})") from None
            if not isinstance(key, Ed25519PublicKey):
                kind = type(key).__name__
                raise KeyFileError(f"{path}: an Ed25519 public key is needed, not {kind}")
            keys.append(key)
        return cls(keys)

    def check(self, kid: str, payload: bytes, signature: str) -> str | None:
        """None when ``signature`` is genuine; otherwise what is wrong with it."""
        key = self.keys.get(kid)
        if key is None:
            known = ", ".join(sorted(self.keys)) or "none"
            return (
                f"signed with key {kid or '(none)'}, which is not among the public keys "
                f"given ({known})"
            )
        try:
            key.verify(bytes.fromhex(signature), payload)
        except (InvalidSignature, ValueError):
            return f"its signature under key {kid} is not genuine"
        return None


def new_private_key_pem() -> tuple[bytes, bytes, str]:
    """A new key: (private PEM, public PEM, key id)."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    return (
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        key_id(public),
    )
