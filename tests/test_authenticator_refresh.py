"""Refresh with ``refresh_groups_from = "id_token"``: a fresh ID token from the refresh grant.

The token endpoint is a stand-in (oidc-provider-mock issues no ID token on a
refresh grant, so this path cannot run against it; see test_authenticator_hub.py
for the parts that can); the ID tokens are signed here and verified against a
real JWKS endpoint on loopback, as at login.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sovereign_hub.authenticator import SovereignAuthenticator
from sovereign_hub.authenticator.claims import group_overage, with_claim
from sovereign_hub.authenticator.tokens import IdTokenVerifier
from sovereign_hub.identity import AUTH_STATE_KEY
from tests.test_authenticator_tokens import AUDIENCE, ISSUER, jwks, keypair, token  # noqa: F401


class FakeUser:
    """What refresh_user reads of a hub user: name, auth_state, spawners."""

    def __init__(self, auth_state):
        self.name = "ana"
        self.auth_state = auth_state
        self.spawners = {}

    async def get_auth_state(self):
        return self.auth_state


def logged_in_state(groups=("eu-researchers",)):
    return {
        "access_token": "old-access",
        "refresh_token": "old-refresh",
        "token_response": {
            "access_token": "old-access",
            "refresh_token": "old-refresh",
            "token_type": "Bearer",
        },
        "oauth_user": {"sub": "ana", "preferred_username": "ana", "groups": list(groups)},
        AUTH_STATE_KEY: {"attributes": {}, "idTokenGroups": list(groups)},
    }


@pytest.fixture
def userinfo():
    """A userinfo endpoint on loopback answering like Entra ID's: no groups."""
    claims = {"sub": "ana", "preferred_username": "ana"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(claims).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # shutdown() waits out one poll: 0.5 s by default, at every teardown
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/userinfo"
    server.shutdown()


@pytest.fixture
def refresh(jwks, userinfo):  # noqa: F811 - the imported fixture
    """An authenticator in id_token mode whose token endpoint answers with ``answers``."""
    published, url = jwks
    private, public = keypair("k1")
    published["keys"] = [public]
    answers: list = []
    grants: list = []

    authenticator = SovereignAuthenticator(
        client_id=AUDIENCE, refresh_groups_from="id_token", enable_auth_state=True
    )
    authenticator.issuer = ISSUER
    authenticator._verifier = IdTokenVerifier(url, ISSUER, AUDIENCE, refresh_cooldown=0)
    authenticator.userdata_url = userinfo

    async def get_token_info(handler, params):
        grants.append(params)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    authenticator.get_token_info = get_token_info

    async def run(state, *answer):
        answers.extend(answer)
        return await authenticator.refresh_user(FakeUser(state))

    run.private = private
    run.grants = grants
    run.authenticator = authenticator
    return run


async def test_groups_come_from_the_fresh_verified_id_token(refresh):
    fresh = token(
        refresh.private, "k1", nonce=None, preferred_username="ana", groups=["us-analysts"]
    )
    model = await refresh(
        logged_in_state(), {"access_token": "new-access", "token_type": "Bearer", "id_token": fresh}
    )
    assert refresh.grants[0]["grant_type"] == "refresh_token"
    assert refresh.grants[0]["refresh_token"] == "old-refresh"
    assert model["groups"] == ["us-analysts"]
    state = model["auth_state"]
    assert state["access_token"] == "new-access"
    assert state["refresh_token"] == "old-refresh"  # none sent back: the old one is kept
    assert state[AUTH_STATE_KEY]["idTokenGroups"] == ["us-analysts"]


async def test_a_grant_without_an_id_token_keeps_the_last_verified_groups(refresh):
    # Claims come from userinfo, which carries no groups: those of the last ID token stay.
    model = await refresh(logged_in_state(), {"access_token": "new-access", "token_type": "Bearer"})
    assert model is not False
    assert model["groups"] == ["eu-researchers"]
    assert model["auth_state"]["access_token"] == "new-access"


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda k: token(keypair("k1")[0], "k1", nonce=None), "signed by another key"),
        (lambda k: token(k, "k1", nonce=None, sub="mallory"), "another subject"),
        (lambda k: token(k, "k1", nonce=None, aud="other-app"), "another audience"),
    ],
)
async def test_a_fresh_id_token_that_fails_verification_means_logging_in_again(refresh, make, why):
    model = await refresh(
        logged_in_state(),
        {"access_token": "new-access", "token_type": "Bearer", "id_token": make(refresh.private)},
    )
    assert model is False, why


async def test_a_refused_grant_means_logging_in_again(refresh):
    from tornado.httpclient import HTTPClientError

    assert await refresh(logged_in_state(), HTTPClientError(400, "invalid_grant")) is False


def test_with_claim_sets_nested_claims_without_changing_the_input():
    data = {"sub": "ana", "realm_access": {"other": 1}}
    assert with_claim(data, "realm_access.roles", ["a"]) == {
        "sub": "ana",
        "realm_access": {"other": 1, "roles": ["a"]},
    }
    assert data == {"sub": "ana", "realm_access": {"other": 1}}
    assert with_claim({}, "groups", ["g"]) == {"groups": ["g"]}


@pytest.mark.parametrize(
    ("data", "path", "overage"),
    [
        ({"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {}}}, "groups", True),
        ({"_claim_names": {"groups": "src1"}}, "roles", False),
        ({"groups": ["a"]}, "groups", False),
        ({"_claim_names": "groups"}, "groups", False),
    ],
)
def test_group_overage(data, path, overage):
    assert group_overage(data, path) is overage


async def test_a_provider_that_does_not_answer_a_refresh_keeps_the_sign_in(refresh, caplog):
    """A refresh grant that times out (599) or meets a 502: the user keeps their sign-in and
    groups until the next refresh (True), not logged out (False) and not an exception, which
    JupyterHub's prepare() would turn into an anonymous request (locked out of everything)."""
    from tornado.httpclient import HTTPClientError

    for down in (HTTPClientError(599, "Timeout in request queue"), HTTPClientError(502)):
        assert await refresh(logged_in_state(), down) is True
    assert "the provider did not answer (HTTPClientError); keeping the current sign-in" in (
        caplog.text
    )


async def test_a_userinfo_endpoint_that_is_down_keeps_the_sign_in(refresh):
    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        refresh.authenticator.userdata_url = f"http://127.0.0.1:{s.getsockname()[1]}/userinfo"
    assert await refresh(logged_in_state(), {"access_token": "new", "token_type": "Bearer"}) is True


def test_the_provider_client_is_our_own_with_room_for_a_burst():
    """Tornado's shared client allows 10 requests at once; a burst of spawns, each refreshing
    its user, queued past the request timeout (1,000 users, 500 at once: 318 failed)."""
    from tornado.httpclient import AsyncHTTPClient

    authenticator = SovereignAuthenticator(provider_max_connections=200)
    assert authenticator.http_client is not AsyncHTTPClient()
    assert authenticator.http_client.max_clients == 200
    assert SovereignAuthenticator().http_client.max_clients == 64
