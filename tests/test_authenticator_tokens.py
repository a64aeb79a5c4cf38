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
    # shutdown() waits out one poll: 0.5 s by default, at every teardown
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
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


def b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict, claims: dict, sign=None) -> str:
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + (b64(sign(head.encode())) if sign else "")


def claims_now(**overrides):
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "ana",
        "iat": now,
        "exp": now + 300,
        "nonce": "n1",
        **overrides,
    }


def hs256_with_public_key(public_pem: bytes):
    import hashlib
    import hmac

    return lambda data: hmac.new(public_pem, data, hashlib.sha256).digest()


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("alg-none", "invalid_token"),
        ("alg-none-no-kid", "invalid_token"),
        ("hs256-with-public-key", "invalid_token"),
        ("no-kid-several-keys", "unknown_key"),
        ("issued-in-the-future", "invalid_token"),
        ("expired-beyond-leeway", "expired"),
        ("not-yet-valid", "invalid_token"),
        ("oversized", "unknown_key"),
        ("another-client", "wrong_audience"),
        ("audience-list-without-us", "wrong_audience"),
    ],
)
async def test_forged_and_confused_tokens_are_refused(jwks, name, code):
    from cryptography.hazmat.primitives import serialization

    published, url = jwks
    k1, pub1 = keypair("k1")
    _, pub2 = keypair("k2")
    published["keys"] = [pub1]
    pem = k1.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    forged = {
        "alg-none": lambda: unsigned({"alg": "none", "kid": "k1"}, claims_now()),
        "alg-none-no-kid": lambda: unsigned({"alg": "none"}, claims_now()),
        "hs256-with-public-key": lambda: unsigned(
            {"alg": "HS256", "kid": "k1", "typ": "JWT"}, claims_now(), hs256_with_public_key(pem)
        ),
        "no-kid-several-keys": lambda: (
            published.update(keys=[pub1, pub2]),
            jwt.encode(claims_now(), k1, algorithm="RS256"),
        )[1],
        "issued-in-the-future": lambda: token(k1, "k1", iat=now + 600, exp=now + 900),
        "expired-beyond-leeway": lambda: token(k1, "k1", iat=now - 600, exp=now - 31),
        "not-yet-valid": lambda: token(k1, "k1", nbf=now + 600),
        "oversized": lambda: "e" * 2_000_000 + "." + "x" * 10 + "." + "y",
        "another-client": lambda: token(k1, "k1", aud="grafana"),
        "audience-list-without-us": lambda: token(k1, "k1", aud=["grafana", "jupyterhub-x"]),
    }[name]()
    started = time.monotonic()
    with pytest.raises(TokenRejected) as info:
        await IdTokenVerifier(url, ISSUER, AUDIENCE, leeway=30).verify(forged, "n1")
    assert info.value.code == code, info.value.reason
    assert info.value.reason
    assert forged[:40] not in info.value.reason  # the token itself is never echoed
    assert time.monotonic() - started < 5


def serve(handler_body):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            handler_body(self)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # shutdown() waits out one poll: 0.5 s by default, at every teardown
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/jwks"


def hangs(request):
    time.sleep(30)


def garbage(body: bytes, content_type: str = "application/json"):
    def answer(request):
        request.send_response(200)
        request.send_header("Content-Type", content_type)
        request.end_headers()
        request.wfile.write(body)

    return answer


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (hangs, "provider_unreachable"),
        (garbage(b"<html>not json</html>", "text/html"), "jwks_unusable"),
        (garbage(b'{"keys": "nope"}'), "jwks_unusable"),
        (
            garbage(b'{"keys": [{"kty": "RSA", "kid": "k1", "n": "!!", "e": "AQAB"}]}'),
            "jwks_unusable",
        ),
        (garbage(b"[]"), "unknown_key"),  # PyJWT reads it as a set with no keys
        (garbage(b"\xff\xfe\x00"), "jwks_unusable"),
    ],
    ids=["hangs", "html", "keys-not-a-list", "broken-key", "a-list", "binary"],
)
async def test_a_jwks_endpoint_that_hangs_or_answers_garbage_is_refused_in_bounded_time(
    answer, code
):
    server, url = serve(answer)
    k1, _ = keypair("k1")
    try:
        started = time.monotonic()
        with pytest.raises(TokenRejected) as info:
            await IdTokenVerifier(url, ISSUER, AUDIENCE, timeout=1).verify(token(k1, "k1"), "n1")
        assert info.value.code == code, info.value.reason
        assert time.monotonic() - started < 4
    finally:
        server.shutdown()
