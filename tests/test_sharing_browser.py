"""Accepting a shared server in a real browser (Debian chromium), real JupyterHub and proxy.

What a recipient sees: JupyterHub's accept-share page, then the owner's
server; and, for a recipient outside the server's region, the refusal naming
the region. Kubernetes is the project's emulator (the ``kube`` fixture).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import tests.test_sharing_hub as sharing_hub
from tests.test_browser import (  # noqa: F401 - browser is a fixture; skips without chromium
    ARTIFACTS,
    assert_accessible,
    browser,
    tab_to,
)
from tests.test_sharing_hub import SHARING, as_user, token_of
from tests.test_spawner_hub import add_users, spawn

start_hub = sharing_hub.start_hub
policy_copy = sharing_hub.policy_copy


def sign_in(browser, url: str, user: str):  # noqa: F811 - the browser fixture
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{url}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", "x")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state()
    return page


def test_a_colleague_accepts_a_share_and_bob_sees_the_region_refusal(
    kube,
    start_hub,
    policy_copy,
    browser,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", "k" * 40)
    hub = start_hub(
        policy_copy,
        extra_config=SHARING.format(
            spool=str(tmp_path / "spool"), store=str(tmp_path / "audit.sqlite")
        ),
    )
    add_users(hub, "eu-researchers", "ana", "carla")
    add_users(hub, "us-analysts", "bob")
    assert spawn(hub, "ana", profile="cpu-small", region="eu").status_code in (201, 202)
    hub.wait_for_server("ana")
    made = as_user(hub, token_of(hub, "ana"), "POST", "/hub/api/share-codes/ana/", json={})
    accept_url = hub.url + made.json()["accept_url"]

    carla = sign_in(browser, hub.url, "carla")
    carla.goto(accept_url)
    carla.wait_for_selector("text=Accept invitation")
    carla.screenshot(path=str(ARTIFACTS / "sharing-01-accept-page.png"))
    carla.click("text=Accept invitation")
    # JupyterHub asks a person to confirm before another user's server gets their identity.
    carla.wait_for_selector("text=Authorize", timeout=60_000)
    carla.screenshot(path=str(ARTIFACTS / "sharing-02-authorize.png"))
    carla.click("input[type=submit], button[type=submit]")
    carla.wait_for_url("**/user/ana/lab**", timeout=60_000)
    carla.wait_for_selector(".jp-LauncherCard", timeout=120_000)  # ana's JupyterLab, rendered
    carla.screenshot(path=str(ARTIFACTS / "sharing-03-shared-server.png"))
    assert "/user/ana/" in carla.url
    # The browser's own session (its cookies) now reaches ana's server.
    status = carla.context.request.get(f"{hub.url}/user/ana/api/status")
    assert status.status == 200, status.text()
    assert "kernels" in status.json()

    bob = sign_in(browser, hub.url, "bob")
    bob.goto(accept_url)
    bob.click("text=Accept invitation")
    bob.wait_for_load_state()
    bob.screenshot(path=str(ARTIFACTS / "sharing-04-refused.png"))
    body = bob.inner_text("body")
    assert "not entitled to region 'eu'" in body
    assert "European Union" in body


def test_ana_shares_from_her_server_card_sees_the_refusal_and_revokes(
    kube,
    start_hub,
    policy_copy,
    browser,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """The home page's "Share" form on ana's running server, by keyboard: carla is granted for
    an hour and listed with that end; bob, in the US, is refused with the region named on the page; carla's share is
    revoked with its button. Accessible (axe, WCAG 2.1 AA) in both themes."""
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", "k" * 40)
    hub = start_hub(
        policy_copy,
        extra_config=SHARING.format(
            spool=str(tmp_path / "spool"), store=str(tmp_path / "audit.sqlite")
        ),
    )
    add_users(hub, "eu-researchers", "ana", "carla")
    add_users(hub, "us-analysts", "bob")
    assert spawn(hub, "ana", profile="cpu-small", region="eu").status_code in (201, 202)
    hub.wait_for_server("ana")

    page = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True).new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("input[name=username]", "ana")
    page.fill("input[name=password]", "x")
    page.click("input[type=submit], button[type=submit]")
    page.goto(f"{hub.url}/hub/home")
    page.wait_for_selector(".sovereign-share-form")
    assert page.is_visible("text=Not shared with anyone.")
    assert_accessible(page, ".sovereign-status")

    def share_by_keyboard(name: str) -> None:
        page.focus("body")
        tab_to(page, ".sovereign-share-name")
        page.keyboard.type(name)
        page.keyboard.press("Enter")

    # For one hour, chosen by keyboard (the longest allowed is preselected).
    assert page.input_value(".sovereign-share-length") == "480"
    page.focus(".sovereign-share-length")
    page.keyboard.press("Home")
    assert page.input_value(".sovereign-share-length") == "60"
    share_by_keyboard("carla")
    page.wait_for_selector(".sovereign-share-recipient:has-text('carla')")
    (carla,) = hub.api("GET", "/shares/ana/").json()["items"]
    assert carla["user"]["name"] == "carla"
    created = datetime.fromisoformat(carla["created_at"].replace("Z", "+00:00"))
    ends = datetime.fromisoformat(carla["expires_at"])
    assert timedelta(minutes=59) < ends - created <= timedelta(minutes=61)
    assert ends.strftime("%Y-%m-%d %H:%M UTC") in page.inner_text(".sovereign-shares")

    share_by_keyboard("bob")
    error = page.wait_for_selector(".sovereign-share-error:not([hidden])")
    assert "not entitled to region 'eu'" in error.inner_text()
    assert "European Union" in error.inner_text()
    assert page.evaluate("document.activeElement.classList.contains('sovereign-share-error')")
    assert_accessible(page, ".sovereign-status")
    page.screenshot(path=str(ARTIFACTS / "sharing-05-card-refused.png"))

    # By group, chosen with the arrow keys as a radio group is.
    page.focus("body")
    tab_to(page, ".sovereign-share-form input[value=user]")
    page.keyboard.press("ArrowRight")
    assert page.is_checked(".sovereign-share-form input[value=group]")
    tab_to(page, ".sovereign-share-name")
    page.keyboard.type("eu-researchers")
    page.keyboard.press("Enter")
    page.wait_for_selector(".sovereign-share-recipient:has-text('eu-researchers')")
    page.screenshot(path=str(ARTIFACTS / "sharing-06-card-shares.png"))

    page.focus("body")
    tab_to(page, ".sovereign-share-revoke[data-name=carla]")
    page.keyboard.press("Enter")
    page.wait_for_selector(".sovereign-share-revoke[data-name=carla]", state="detached")
    listed = hub.api("GET", "/shares/ana/").json()["items"]
    assert [(s["kind"], (s["user"] or s["group"])["name"]) for s in listed] == [
        ("group", "eu-researchers")
    ]
