"""ID token verification against the provider's published keys.

Upstream OAuthenticator decodes ID tokens without checking their signature;
we check signature (JWKS, refreshed when a new key id appears), issuer,
audience, expiry and nonce, with **PyJWT**. Only asymmetric algorithms are accepted
(no ``none``, no HMAC keyed with the public key); a JWKS endpoint that hangs is
given ``timeout`` seconds, and one that answers garbage refuses the login with
``jwks_unusable`` instead of failing the request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import jwt

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class TokenRejected(Exception):
    """An ID token that must not be trusted; ``reason`` is safe to show and log."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class IdTokenVerifier:
    def __init__(
        self,
        jwks_uri: str,
        issuer: str,
        audience: str,
        leeway: int = 30,
        refresh_cooldown: float = 30,
        timeout: float = 10,
    ) -> None:
        # PyJWKClient caches keys and fetches again for an unknown key id (key
        # rotation), at most once per refresh_cooldown, so forged key ids
        # cannot make the hub hammer the provider.
        self.jwks = jwt.PyJWKClient(
            jwks_uri,
            cache_keys=True,
            lifespan=3600,
            timeout=timeout,
            cooldown_duration=refresh_cooldown,
        )
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway

    def _signing_key(self, token: str) -> jwt.PyJWK:
        if jwt.get_unverified_header(token).get("kid"):
            return self.jwks.get_signing_key_from_jwt(token)
        # OpenID Connect lets a provider with a single key omit the key id.
        keys = self.jwks.get_signing_keys()
        if len(keys) != 1:
            raise jwt.PyJWKClientError(
                "the ID token names no key and the provider publishes several"
            )
        return keys[0]

    def _verify(self, token: str, nonce: str | None) -> dict[str, Any]:
        try:
            key = self._signing_key(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise TokenRejected(
                "provider_unreachable", f"the provider's keys could not be fetched ({exc})"
            ) from None
        except (jwt.PyJWKClientError, jwt.DecodeError):
            raise TokenRejected(
                "unknown_key", "the ID token is signed with a key the provider does not publish"
            ) from None
        except (jwt.PyJWKSetError, ValueError, TypeError, AttributeError) as exc:
            # Not JSON, not a key set, or keys that do not parse: refused with why, not a 500.
            raise TokenRejected(
                "jwks_unusable",
                f"the provider's published keys (JWKS) are not usable ({type(exc).__name__})",
            ) from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("expired", "the ID token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected(
                "wrong_audience", "the ID token was issued for another application"
            ) from None
        except jwt.InvalidIssuerError:
            raise TokenRejected(
                "wrong_issuer", "the ID token was issued by another provider"
            ) from None
        except jwt.InvalidSignatureError:
            raise TokenRejected(
                "bad_signature", "the ID token's signature does not verify"
            ) from None
        except jwt.PyJWTError as exc:
            raise TokenRejected("invalid_token", f"the ID token is invalid ({exc})") from None
        if nonce is not None and claims.get("nonce") != nonce:
            raise TokenRejected(
                "wrong_nonce", "the ID token does not answer this login (nonce mismatch)"
            )
        return claims

    async def verify(self, token: str, nonce: str | None) -> dict[str, Any]:
        # Key fetching is blocking I/O: keep it off the hub's event loop.
        return await asyncio.to_thread(self._verify, token, nonce)
