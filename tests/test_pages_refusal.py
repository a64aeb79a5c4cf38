"""The refusal card: contact parsing and what the card says (sovereign_hub.pages.refusal)."""

from __future__ import annotations

import logging

import pytest
from tornado import web

from sovereign_hub.pages.refusal import Contact, Refusal, parse_contact, render_refusal
from sovereign_hub.refusals import SpawnRefused


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("  ", None),
        (
            "https://help.example.com/jupyter",
            Contact("https://help.example.com/jupyter", "https://help.example.com/jupyter"),
        ),
        (
            "platform-team@example.com",
            Contact("mailto:platform-team@example.com", "platform-team@example.com"),
        ),
        ("mailto:ops@corp.example", Contact("mailto:ops@corp.example", "ops@corp.example")),
    ],
)
def test_a_contact_is_a_url_or_an_address(value, expected):
    assert parse_contact(value) == expected


@pytest.mark.parametrize(
    "value", ["call Bob", "javascript:alert(1)", "ftp://files.example.com", "@example.com", "a@b"]
)
def test_anything_else_is_refused_naming_the_setting_and_what_is_allowed(value):
    with pytest.raises(
        ValueError, match=r"support_contact: .* neither an http\(s\) URL nor an e-mail"
    ):
        parse_contact(value)


def test_the_card_says_the_reason_once_and_whom_the_hub_saw():
    html = render_refusal(
        Refusal(
            "No access to this hub",
            "None of your groups gives access <here>.",
            "carol",
            ("contractors", "staff"),
            Contact("mailto:ops@corp.example", "ops@corp.example"),
        )
    )
    assert html.count("None of your groups gives access &lt;here&gt;.") == 1
    assert '<h1 id="sovereign-refusal-heading" class="h3">No access to this hub</h1>' in html
    assert '<dd class="col-sm-9" id="sovereign-refusal-account">carol</dd>' in html
    assert "contractors, staff" in html
    assert 'href="mailto:ops@corp.example">ops@corp.example</a>' in html


def test_no_groups_and_no_contact_are_said_plainly():
    html = render_refusal(Refusal("Your server was not started", "Quota.", "ana", ()))
    assert 'id="sovereign-refusal-groups">none</dd>' in html
    assert "Contact" not in html


def test_a_refusal_keeps_one_sentence_for_the_api_and_the_card_for_pages():
    exc = SpawnRefused(
        403, "100% used", Refusal("Your server was not started", "100% used", "ana", ())
    )
    assert exc.jupyterhub_message == "100% used"
    assert "sovereign-refusal" in exc.jupyterhub_html_message
    assert not hasattr(SpawnRefused(403, "plain"), "jupyterhub_html_message")


def test_a_percent_sign_in_a_refusal_is_logged_once(caplog):
    """tornado escapes a bare % in a message given without arguments; the hub's log line (and
    str(), which JupyterHub puts on the progress page) show it as written, not as %%."""
    refused = SpawnRefused(403, "the eu-researchers GPU quota is 100% used")
    assert str(refused) == "HTTP 403: Forbidden (the eu-researchers GPU quota is 100% used)"
    handler_log = logging.getLogger("tornado.general")
    with caplog.at_level(logging.WARNING, logger="tornado.general"):
        # what tornado's RequestHandler.log_exception does with an HTTPError
        handler_log.warning("%d %s: " + refused.log_message, refused.status_code, "GET /x")
    assert caplog.messages == ["403 GET /x: the eu-researchers GPU quota is 100% used"]
    assert isinstance(refused, web.HTTPError)
