"""SovereignAuthenticator end to end: a real OIDC provider process and a real hub.

The provider is oidc-provider-mock on loopback (nonces required); the browser
is a requests session that follows the redirects and posts the provider's
login form, as a person would.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import requests

from sovereign_hub.pages import TEMPLATES
from sovereign_hub.sandbox.hubprocess import Hub, free_port
from sovereign_hub.sandbox.oidc import OidcProvider
from tests.conftest import ROOT

USERS = [
    {"sub": "ana", "preferred_username": "ana", "groups": ["eu-researchers"], "country": "DE"},
    {"sub": "carol", "preferred_username": "carol", "groups": ["contractors"]},
    {"sub": "ada", "preferred_username": "ada", "groups": ["platform-admins"]},
    {"sub": "bob", "preferred_username": "bob", "groups": ["us-analysts"]},
    {"sub": "weird", "preferred_username": "has/slash", "groups": "eu-researchers"},
]


@pytest.fixture
def provider(tmp_path):
    p = OidcProvider(USERS, tmp_path / "oidc.log")
    yield p
    p.stop()


@pytest.fixture
def policy_file():
    return ROOT / "examples" / "policy.yaml"


@pytest.fixture
def extra_config():
    return ""


@pytest.fixture
def hub(provider, tmp_path, policy_file, extra_config):
    port = free_port()
    config = f"""
c.JupyterHub.authenticator_class = "sovereign"
c.SovereignAuthenticator.issuer = {provider.issuer!r}
c.SovereignAuthenticator.client_id = "jupyterhub"
c.SovereignAuthenticator.client_secret = "not-a-real-secret"
c.SovereignAuthenticator.oauth_callback_url = "http://127.0.0.1:{port}/hub/oauth_callback"
c.SovereignAuthenticator.policy_file = {str(policy_file)!r}
c.SovereignAuthenticator.attribute_claims = {{"country": "country"}}
c.SovereignAuthenticator.admin_groups = {{"platform-admins"}}
c.SovereignAuthenticator.auth_refresh_age = 1
c.SovereignAuthenticator.support_contact = "platform-team@example.com"
c.JupyterHub.template_paths = [{str(TEMPLATES)!r}]
c.JupyterHub.redirect_to_server = False  # these tests are about logging in, not spawning
{extra_config}
"""
    h = Hub(
        tmp_path / "hub", config, env={"JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32)}, port=port
    )
    yield h
    h.stop()


def login(hub: Hub, sub: str) -> requests.Response:
    """The browser's walk: hub -> provider's login form -> post the user -> back to the hub."""
    session = requests.Session()
    page = session.get(f"{hub.url}/hub/oauth_login", timeout=30)
    assert "/oauth2/authorize" in page.url, page.url
    assert "nonce=" in page.url
    assert "code_challenge=" in page.url
    form_action = re.search(r'<form[^>]*action="([^"]*)"', page.text)
    action = (
        urljoin(page.url, form_action.group(1))
        if form_action and form_action.group(1)
        else page.url
    )
    response = session.post(action, data={"sub": sub, "action": "allow"}, timeout=30)
    response.session = session  # type: ignore[attr-defined]
    return response


def user_model(hub: Hub, name: str) -> dict:
    return hub.api("GET", f"/users/{name}").json()


def test_an_entitled_user_logs_in_with_groups_and_attributes(hub):
    response = login(hub, "ana")
    assert response.status_code == 200, response.text[-2000:]
    assert response.url.startswith(hub.url)
    model = user_model(hub, "ana")
    assert model["groups"] == ["eu-researchers"]
    assert model["admin"] is False
    assert model["auth_state"]["sovereign"] == {"attributes": {"country": ["DE"]}}
    assert "login" in hub.logs()


def test_a_user_with_no_entitlement_gets_a_clear_page(hub):
    """One short heading, the reason once, whom the hub saw, whom to ask, a way out."""
    response = login(hub, "carol")
    assert response.status_code == 403
    page = response.text
    assert page.count("none of your groups gives access to this hub") == 1
    assert re.findall(r"<h1[^>]*>([^<]*)</h1>", page) == ["No access to this hub"]
    assert "403 :" not in page
    assert re.search(r'id="sovereign-refusal-account">carol<', page)
    assert re.search(r'id="sovereign-refusal-groups">contractors<', page)
    assert 'href="mailto:platform-team@example.com">' in page
    assert re.search(r'id="sovereign-sign-out" href="/hub/logout"', page)
    assert "Traceback" not in page
    assert "login_denied" in hub.logs()


def test_admin_comes_from_the_admin_group(hub, provider):
    assert login(hub, "ada").status_code == 200
    assert user_model(hub, "ada")["admin"] is True
    # Removing the group revokes admin at the next login.
    provider.set_user({"sub": "ada", "preferred_username": "ada", "groups": ["eu-researchers"]})
    assert login(hub, "ada").status_code == 200
    assert user_model(hub, "ada")["admin"] is False


def test_groups_change_between_logins(hub, provider):
    assert login(hub, "bob").status_code == 200
    assert user_model(hub, "bob")["groups"] == ["us-analysts"]
    provider.set_user(
        {"sub": "bob", "preferred_username": "bob", "groups": ["eu-researchers", "us-analysts"]}
    )
    assert login(hub, "bob").status_code == 200
    assert sorted(user_model(hub, "bob")["groups"]) == ["eu-researchers", "us-analysts"]
    provider.set_user({"sub": "bob", "preferred_username": "bob", "groups": []})
    assert login(hub, "bob").status_code == 403


def test_refresh_rereads_the_providers_claims(hub, provider):
    response = login(hub, "ana")
    session = response.session  # type: ignore[attr-defined]
    provider.set_user(
        {
            "sub": "ana",
            "preferred_username": "ana",
            "groups": ["eu-researchers", "us-analysts"],
            "country": "FR",
        }
    )
    time.sleep(1.5)  # past auth_refresh_age
    assert session.get(f"{hub.url}/hub/home", timeout=30).status_code == 200
    model = user_model(hub, "ana")
    assert sorted(model["groups"]) == ["eu-researchers", "us-analysts"]
    assert model["auth_state"]["sovereign"]["attributes"] == {"country": ["FR"]}


# Microsoft Entra ID puts groups in the ID token but not in userinfo. The provider here
# sends the same claims from both, so a user whose groups claim is removed is what a
# refresh against Entra's userinfo sees: no groups claim at all.
ANA_WITHOUT_GROUPS = {"sub": "ana", "preferred_username": "ana", "country": "FR"}


def refreshed(hub: Hub, provider: OidcProvider, response, claims) -> dict:
    session = response.session  # type: ignore[attr-defined]
    provider.set_user(claims)
    time.sleep(1.5)  # past auth_refresh_age
    assert session.get(f"{hub.url}/hub/home", timeout=30).status_code == 200
    return user_model(hub, "ana")


def test_by_default_a_refresh_takes_groups_from_userinfo(hub, provider):
    model = refreshed(hub, provider, login(hub, "ana"), ANA_WITHOUT_GROUPS)
    assert model["groups"] == []  # right for Keycloak or Okta; Entra needs a setting below


@pytest.mark.parametrize(
    "extra_config", ['c.SovereignAuthenticator.refresh_groups_from = "last_id_token"']
)
def test_last_id_token_keeps_the_groups_when_userinfo_carries_none(hub, provider):
    model = refreshed(hub, provider, login(hub, "ana"), ANA_WITHOUT_GROUPS)
    assert model["groups"] == ["eu-researchers"]
    # The other claims still follow the provider.
    assert model["auth_state"]["sovereign"]["attributes"] == {"country": ["FR"]}


@pytest.mark.parametrize(
    "extra_config",
    [
        'c.SovereignAuthenticator.refresh_groups_from = "id_token"\n'
        # This provider accepts the refresh grant only with HTTP Basic client authentication.
        "c.SovereignAuthenticator.basic_auth = True"
    ],
)
def test_id_token_mode_refreshes_through_the_refresh_grant(hub, provider):
    response = login(hub, "ana")
    before = user_model(hub, "ana")["auth_state"]
    model = refreshed(hub, provider, response, ANA_WITHOUT_GROUPS)
    # The grant ran: new tokens are kept. This provider sends no ID token with them
    # (test_authenticator_refresh.py covers one that does), so the last verified
    # token's groups stay, and the log says why.
    assert model["auth_state"]["access_token"] != before["access_token"], hub.logs()[-3000:]
    assert model["groups"] == ["eu-researchers"]
    assert "answered the refresh-token grant without an ID token" in hub.logs()


def test_entra_group_overage_is_refused_with_the_reason(hub, provider):
    provider.set_user(
        {
            "sub": "ana",
            "preferred_username": "ana",
            "_claim_names": {"groups": "src1"},
            "_claim_sources": {
                "src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/ana/getMemberObjects"}
            },
        }
    )
    response = login(hub, "ana")
    assert response.status_code == 403
    assert "sent a link instead of your groups" in response.text
    assert "group_overage" in hub.logs()


def test_an_unusable_username_is_refused_not_a_500(hub):
    response = login(hub, "weird")
    assert response.status_code == 403
    assert "is not a usable username" in response.text


@pytest.mark.parametrize("policy_file", [ROOT / "examples" / "no-such-policy.yaml"])
def test_a_missing_policy_refuses_login_with_a_reason_not_a_500(hub):
    response = login(hub, "ana")
    assert response.status_code == 403, response.text[-2000:]
    assert "The hub&#39;s policy cannot be read right now" in response.text
    assert re.search(r'id="sovereign-refusal-groups">eu-researchers<', response.text)
    assert "Traceback" not in response.text
    logs = hub.logs()
    assert "no-such-policy.yaml: 1 problem in the policy document" in logs
    assert "policy_unavailable" in logs
    # An admin is not locked out by it: they can log in and fix the deployment.
    assert login(hub, "ada").status_code == 200


def test_a_slow_provider_gives_a_clear_503(tmp_path):
    class Slow(BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(5)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    # shutdown() waits out one poll: 0.5 s by default, at every teardown
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    config = f"""
c.JupyterHub.authenticator_class = "sovereign"
c.SovereignAuthenticator.issuer = "http://127.0.0.1:{server.server_port}"
c.SovereignAuthenticator.client_id = "jupyterhub"
c.SovereignAuthenticator.client_secret = "x"
c.SovereignAuthenticator.provider_timeout = 2
"""
    hub = Hub(tmp_path / "hub", config, env={"JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32)})
    try:
        start = time.monotonic()
        response = requests.get(f"{hub.url}/hub/oauth_login", timeout=30)
        assert response.status_code == 503
        assert "is unreachable" in response.text
        assert time.monotonic() - start < 5  # the timeout, not the provider, decided
    finally:
        hub.stop()
        server.shutdown()


def test_a_provider_that_is_down_gives_a_clear_503(hub, provider):
    provider.stop()
    response = requests.get(f"{hub.url}/hub/oauth_login", timeout=30)
    assert response.status_code == 503
    assert "The identity provider" in response.text
    assert "is unreachable" in response.text


def callback_of(response: requests.Response) -> str:
    """The hub callback URL (with the provider's code and the state) a login went through."""
    for step in [*response.history, response]:
        if "/hub/oauth_callback" in step.url:
            return step.url
    raise AssertionError("the login never reached the hub's callback")


def start_login(hub: Hub) -> tuple[requests.Session, str]:
    """A browser that began a login (it holds the state cookie) and the state it was given."""
    session = requests.Session()
    redirect = session.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=30)
    return session, parse_qs(urlparse(redirect.headers["Location"]).query)["state"][0]


def test_replayed_codes_and_forged_states_are_refused_and_audited(hub):
    """A code is good for one login only: replayed by an attacker inside their own login
    (a valid state of their own), the provider refuses it and the ID token's nonce would not
    match; replayed with someone else's state, the state check refuses it. Each refusal
    is a ``login_denied`` event naming why, and no code appears in the hub's log."""
    first = login(hub, "ana")
    assert first.status_code == 200
    victim = parse_qs(urlparse(callback_of(first)).query)
    code, victim_state = victim["code"][0], victim["state"][0]

    attacker, own_state = start_login(hub)
    replayed = attacker.get(
        f"{hub.url}/hub/oauth_callback", params={"code": code, "state": own_state}, timeout=30
    )
    assert replayed.status_code == 403, replayed.text[-2000:]
    assert "No access to this hub" in replayed.text  # the refusal page's heading
    assert "Traceback" not in replayed.text

    forger, _ = start_login(hub)
    forged = forger.get(
        f"{hub.url}/hub/oauth_callback", params={"code": code, "state": victim_state}, timeout=30
    )
    assert forged.status_code == 400
    assert "OAuth state mismatch" in forged.text
    stateless = requests.get(
        f"{hub.url}/hub/oauth_callback", params={"code": code, "state": victim_state}, timeout=30
    )
    assert stateless.status_code == 400
    no_code = requests.get(f"{hub.url}/hub/oauth_callback", params={"state": "x"}, timeout=30)
    assert no_code.status_code == 400
    error = requests.get(
        f"{hub.url}/hub/oauth_callback",
        params={"error": "access_denied", "error_description": "<script>x</script>"},
        timeout=30,
    )
    assert error.status_code == 400
    assert "<script>x</script>" not in error.text

    logs = hub.logs()
    denied = [line for line in logs.splitlines() if "login_denied" in line]
    for reason in ("token_exchange", "state_mismatch", "missing_code", "provider_error"):
        assert any(reason in line for line in denied), (reason, denied)
    assert code not in logs, "an authorization code was written to the hub's log"
    assert "ana" in user_model(hub, "ana")["name"]
