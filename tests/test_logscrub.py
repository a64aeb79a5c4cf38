"""Secrets in logged URLs are replaced before any log handler sees them."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys

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


def pod_dump(env: dict[str, str]) -> str:
    """A pod as KubeSpawner logs it when its create is refused (``pod.to_str()``)."""
    from kubespawner.objects import make_pod

    pod = make_pod(name="jupyter-ana", cmd=["jupyterhub-singleuser"], port=8888,
                   image="registry.example/lab@sha256:" + "a" * 64, env=env)  # fmt: skip
    return pod.to_str()


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("JUPYTERHUB_API_TOKEN", "0123456789abcdef0123456789abcdef"),
        ("JPY_API_TOKEN", "x" * 120),  # long enough that pprint splits it over lines
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG"),
        ("DB_PASSWORD", "hunter2hunter2"),
        ("SIGNING_KEY", "k3y-material-1"),
    ],
)
def test_a_secret_env_value_in_a_pod_dump_is_scrubbed_by_its_name(name, secret):
    dump = pod_dump({name: secret, "JUPYTERHUB_USER": "ana-visible"})
    assert secret[:40] in dump  # the dump carries it as KubeSpawner would log it
    scrubbed = logscrub.scrub(dump)
    assert secret[:40] not in scrubbed
    assert "[secret]" in scrubbed
    assert "ana-visible" in scrubbed  # only secret-named values go


def test_a_remembered_value_is_scrubbed_wherever_it_appears():
    secret = "remembered-" + "9" * 20
    assert logscrub.scrub(f"body: {{'x': '{secret}'}}") == f"body: {{'x': '{secret}'}}"
    logscrub.remember(secret)
    logscrub.remember("short")  # too short to be told from ordinary words: ignored
    assert logscrub.scrub(f"body: {{'x': '{secret}'}}") == "body: {'x': '[secret]'}"
    assert logscrub.scrub("a short story") == "a short story"


def test_the_handler_filter_scrubs_records_of_any_logger_and_their_tracebacks():
    """A filter on a logger sees only the records logged on it; the one on the hub's
    handlers sees records propagated from any child logger, tracebacks included."""
    secret = "handler-" + "7" * 24
    logscrub.remember(secret)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    parent = logging.getLogger("sovtest-hub")
    parent.addHandler(handler)
    parent.setLevel(logging.DEBUG)
    try:
        logscrub.install_on_handlers(parent)
        logscrub.install_on_handlers(parent)  # idempotent
        assert handler.filters.count(logscrub._RECORD_FILTER) == 1
        child = logging.getLogger("sovtest-hub.kubernetes_asyncio.rest")
        child.debug("response body: %s", {"env": [{"name": "X", "value": secret}]})
        try:
            raise RuntimeError(f"refused: {secret}")
        except RuntimeError:
            child.exception("Failed for %s", pod_dump({"JUPYTERHUB_API_TOKEN": "t" * 32}))
    finally:
        parent.removeHandler(handler)
    written = stream.getvalue()
    for line in ("response body", "Failed for", "RuntimeError: refused"):
        assert line in written
    assert secret not in written
    assert "t" * 32 not in written


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "store postgresql://writer:pw-s3cret@db:5432/audit is down",
            "store postgresql://writer:[secret]@db:5432/audit is down",
        ),
        ("https://u:p%40ss@loki.example/push", "https://u:[secret]@loki.example/push"),
        ("https://loki.example:3100/push", "https://loki.example:3100/push"),  # a port, no user
    ],
)
def test_a_password_in_a_url_is_scrubbed(text, expected):
    assert logscrub.scrub(text) == expected


def test_an_incident_is_logged_scrubbed_under_the_reference_it_returns(caplog):
    logger = logging.getLogger("sovtest-incident")
    with caplog.at_level(logging.ERROR, logger="sovtest-incident"):
        ref = logscrub.log_incident(
            logger, "share not made", RuntimeError("postgresql://w:pw-9@db/audit down")
        )
        other = logscrub.log_incident(logger, "share not made", RuntimeError("again"))
    assert re.fullmatch(r"[0-9a-f]{12}", ref)
    assert ref != other
    assert f"share not made [ref {ref}]: postgresql://w:[secret]@db/audit down" in caplog.text
    assert "pw-9" not in caplog.text


# A finalizer that logs while the interpreter shuts down, when the import system is gone
# (sys.meta_path is None): the filter must neither raise nor let the secret through.
_LOGS_AT_SHUTDOWN = """
import logging
from sovereign_hub import logscrub

logging.basicConfig(format="%(message)s")
logscrub.install_on_handlers()


class LogsWhenCollected:
    def __del__(self):
        logging.getLogger("late").warning(
            "late GET /x?token=t0k3n-late postgresql://w:pw-late@db/audit "
            '{"X-Xsrftoken": "xsrf-late"}'
        )


kept_until_shutdown = LogsWhenCollected()
"""


@pytest.mark.integration
def test_a_record_logged_at_interpreter_shutdown_is_scrubbed_without_a_traceback():
    result = subprocess.run(
        [sys.executable, "-c", _LOGS_AT_SHUTDOWN],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Error" not in result.stderr
    assert "late GET /x?token=[secret] postgresql://w:[secret]@db/audit" in result.stderr
    for secret in ("t0k3n-late", "pw-late", "xsrf-late"):
        assert secret not in result.stderr


def test_a_record_that_cannot_be_scrubbed_is_withheld_not_raised(monkeypatch):
    secret = "unscrubbable-" + "5" * 20
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("sovtest-withheld")
    logger.addHandler(handler)
    handler.addFilter(logscrub.ScrubRecord())
    logger.addFilter(logscrub.ScrubSecrets())

    def broken(text: str) -> str:
        raise ImportError("sys.meta_path is None, Python is likely shutting down")

    monkeypatch.setattr(logscrub, "scrub", broken)
    try:
        try:
            raise RuntimeError(secret)
        except RuntimeError:
            logger.exception("Failed with %s", secret)  # must not raise
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert written == "[log record withheld: scrubbing failed: ImportError]\n"
