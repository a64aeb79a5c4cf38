"""ID token verification: signature against the JWKS, issuer, audience, expiry, nonce.

Tokens are signed here with keys of our own, and served from a JWKS endpoint
on loopback.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sovereign_hub.authenticator.tokens import IdTokenVerifier, TokenRejected

ISSUER, AUDIENCE = "https://login.example.test", "jupyterhub"


def keypair(kid: str):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**public, "kid": kid, "use": "sig", "alg": "RS256"}


@pytest.fixture
def jwks():
    published = {"keys": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(published).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield published, f"http://127.0.0.1:{server.server_port}/jwks"
    server.shutdown()


def token(private, kid, **overrides):
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "ana",
        "iat": now,
        "exp": now + 300,
        "nonce": "n1",
        **overrides,
    }
    return jwt.encode(claims, private, algorithm="RS256", headers={"kid": kid})


async def test_a_genuine_token_verifies_and_keys_rotate(jwks):
    published, url = jwks
    k1, pub1 = keypair("k1")
    published["keys"] = [pub1]
    verifier = IdTokenVerifier(url, ISSUER, AUDIENCE, refresh_cooldown=0)
    assert (await verifier.verify(token(k1, "k1"), "n1"))["sub"] == "ana"
    # The provider rotates to a new key: the verifier fetches it on first sight.
    k2, pub2 = keypair("k2")
    published["keys"] = [pub1, pub2]
    assert (await verifier.verify(token(k2, "k2"), "n1"))["sub"] == "ana"


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda k, o: token(o, "k1"), "bad_signature"),  # right kid, signed by another key
        (lambda k, o: token(o, "unpublished"), "unknown_key"),
        (
            lambda k, o: token(k, "k1", exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
            "expired",
        ),
        (lambda k, o: token(k, "k1", aud="another-app"), "wrong_audience"),
        (lambda k, o: token(k, "k1", iss="https://evil.example"), "wrong_issuer"),
        (lambda k, o: token(k, "k1", nonce="replayed"), "wrong_nonce"),
        (lambda k, o: "not.a.token", "unknown_key"),
    ],
)
async def test_untrustworthy_tokens_are_refused_with_a_reason(jwks, make, code):
    published, url = jwks
    k1, pub1 = keypair("k1")
    other, _ = keypair("other")
    published["keys"] = [pub1]
    with pytest.raises(TokenRejected) as info:
        await IdTokenVerifier(url, ISSUER, AUDIENCE).verify(make(k1, other), "n1")
    assert info.value.code == code
    assert info.value.reason
