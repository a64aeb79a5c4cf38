"""Secrets in logged URLs are replaced before any log handler sees them."""

from __future__ import annotations

import logging

import pytest

from sovereign_hub import logscrub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "403 GET /hub/oauth_callback?code=abc123&state=eyJz (127.0.0.1): refused",
            "403 GET /hub/oauth_callback?code=[secret]&state=[secret] (127.0.0.1): refused",
        ),
        ("GET /hub/spawn?token=t0k3n#frag", "GET /hub/spawn?token=[secret]#frag"),
        ("GET /x?next=/hub/home&_xsrf=2|ab", "GET /x?next=/hub/home&_xsrf=[secret]"),
        ("GET /x?client_secret=s&page=2", "GET /x?client_secret=[secret]&page=2"),
        ("GET /hub/home?page=2", "GET /hub/home?page=2"),
        # The headers JupyterHub logs (as JSON) with a failed request.
        (
            '{"Host": "hub", "X-Xsrftoken": "MnwxOjB8MTA6", "Accept": "*/*"}',
            '{"Host": "hub", "X-Xsrftoken": "[secret]", "Accept": "*/*"}',
        ),
        ('"Proxy-Authorization": "Basic dTpw"', '"Proxy-Authorization": "[secret]"'),
    ],
)
def test_secret_query_values_are_scrubbed(text, expected):
    assert logscrub.scrub(text) == expected


def test_tornados_refusal_log_line_carries_no_code(caplog):
    """What tornado's RequestHandler.log_exception logs for a refused OAuth callback."""
    logscrub.install()
    logscrub.install()  # idempotent
    logger = logging.getLogger("tornado.general")
    assert logger.filters.count(logscrub._FILTER) == 1
    with caplog.at_level(logging.WARNING, logger="tornado.general"):
        logger.warning("%d %s: %s", 403, "GET /hub/oauth_callback?code=SECRET1&state=S2", "no")
    assert "SECRET1" not in caplog.text
    assert "S2" not in caplog.text
    assert "code=[secret]" in caplog.text
