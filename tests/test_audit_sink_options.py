"""Sink options as typed fields, and third-party sinks named by import path.

The third-party sink is a real class defined here and loaded by its import
path through the same ``make_sink`` the hub uses; a real trail delivers to it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from sovereign_hub.audit import schemas
from sovereign_hub.audit.sinks import SINKS, Sink, SinkConfigError, make_sink, sink_class
from sovereign_hub.audit.sinks.options import options_of
from sovereign_hub.audit.trail import AuditTrail
from sovereign_hub.audit.verify import verify

KEY = "sink-options-test-key-" + "s" * 32
DELIVERED: list[dict[str, Any]] = []


class RecordingSink(Sink):
    """A third-party sink: keeps what it is given, under a label."""

    name = "recording"
    option_help: ClassVar[dict[str, str]] = {
        "label": "Tag for the records.",
        "limit": "Most records kept.",
    }

    def __init__(self, label: str, limit: int = 1000, name: str | None = None) -> None:
        super().__init__(name)
        self.label = label
        self.limit = limit

    def deliver(self, records: list[dict[str, Any]]) -> None:
        DELIVERED.extend({"label": self.label, **r} for r in records[: self.limit])


class WriteOnlyStub(Sink):
    """Meets the base class but not the contract: nothing is delivered."""


class NotASink:
    def deliver(self, records: list[dict[str, Any]]) -> None:
        pass


HERE = __name__


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"type": "syslog", "host": "siem", "port": "6514"},
            r"audit sink syslog: port: expected an integer, got str$",
        ),
        (
            {"type": "syslog", "host": "siem", "tls": "yes"},
            r"tls: expected true or false",
        ),
        ({"type": "syslog", "host": "siem", "port": True}, r"port: expected an integer"),
        (
            {"type": "loki", "url": "http://loki", "labels": {"team": 7}},
            r"labels\['team'\]: expected text, got int$",
        ),
        (
            {"type": "sqlite", "name": "primary", "paht": "/x"},
            r"audit sink primary: unknown option 'paht'; SQLiteSink accepts: path, name$",
        ),
        (
            {"type": "syslog"},
            r"audit sink syslog: host is required \(text\); SyslogSink accepts: host, port, ",
        ),
        (
            {"type": "webhook", "url": "https://x", "tenant": "a"},
            r"unknown option 'tenant'; WebhookSink accepts: url, signing_key_file, "
            r"signing_key_env, token_file, .*, timeout, name",
        ),
    ],
)
def test_options_are_typed_and_errors_list_what_is_accepted(spec, message):
    with pytest.raises(SinkConfigError, match=message):
        make_sink(spec)


SECRET = "sk_live_51HhunterTWO"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"headers": {"X-Api-Key": SECRET, "X-Retries": 3}},
            r"headers\['X-Retries'\]: expected text, got int$",
        ),
        (
            {"headers": {"Authorization": ["Bearer " + SECRET]}},
            r"headers\['Authorization'\]: expected text, got list$",
        ),
        ({"headers": {1: SECRET}}, r"headers: expected a mapping of text to text, got a key"),
        ({"headers": "Authorization: Bearer " + SECRET}, r"headers: expected a mapping"),
        ({"token_file": {"Authorization": SECRET}}, r"token_file: expected text, got dict$"),
        ({"timeout": SECRET}, r"timeout: expected a number, got str$"),
    ],
)
def test_a_wrong_typed_option_never_shows_its_value(spec, message):
    """Configuration errors reach logs: they name the option (and a mapping's key) and
    the value's type, never the value, which may be a secret in the wrong place."""
    with pytest.raises(SinkConfigError, match=message) as caught:
        make_sink({"type": "webhook", "url": "https://siem.example/in", **spec})
    assert SECRET not in str(caught.value)
    assert "hunter" not in repr(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            f"ftp://siem:{SECRET}@siem.example/in",
            r"url: not an http\(s\) URL \(its scheme is 'ftp'\)",
        ),
        (f"siem.example/in?key={SECRET}", r"url: not an http\(s\) URL \(it has no scheme\)"),
        (f"https://siem:{SECRET}@siem.example/in", r"url: must not contain a password"),
    ],
)
def test_an_http_sinks_url_is_refused_without_quoting_it(url, message):
    with pytest.raises(SinkConfigError, match=message) as caught:
        make_sink({"type": "webhook", "url": url})
    assert SECRET not in str(caught.value)


def test_an_integer_is_accepted_for_a_number_option():
    sink = make_sink({"type": "syslog", "host": "siem", "timeout": 3})
    assert sink.timeout == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", sorted(SINKS))
def test_every_builtin_option_says_what_it_means(kind):
    cls = SINKS[kind]
    options = options_of(cls)
    assert [o.name for o in options if not o.help] == []
    helped = {name for klass in cls.__mro__ for name in vars(klass).get("option_help", {})}
    assert helped <= {o.name for o in options}, "help for an option the sink does not take"


def test_a_third_party_sink_by_import_path_receives_the_trail(tmp_path, monkeypatch):
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", KEY)
    DELIVERED.clear()
    spec = {"type": f"{HERE}:RecordingSink", "label": "siem", "name": "ours"}
    trail = AuditTrail(
        spool_dir=str(tmp_path / "spool"), sinks=[spec], hub_instance="hub-1"
    ).start()
    try:
        trail.emit(schemas.LOGIN, {"actor": "ana", "subject": "ana", "groups": [], "admin": False})
        assert trail.drain()
    finally:
        trail.stop()
    assert {r["label"] for r in DELIVERED} == {"siem"}
    assert [schemas.family(r["schema"]) for r in DELIVERED][:2] == ["epoch-started", "login"]
    records = [{k: v for k, v in r.items() if k != "label"} for r in DELIVERED]
    assert verify(records, KEY.encode()).ok


def test_a_third_party_sink_may_be_named_with_dots_only():
    assert sink_class(f"{HERE}.RecordingSink") is RecordingSink


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("no_such_package.audit:Sink", r"cannot import no_such_package.audit \(ModuleNotFound"),
        (f"{HERE}:Missing", rf"{HERE} has no 'Missing'"),
        (f"{HERE}:NotASink", r"NotASink is not a subclass of sovereign_hub.audit.sinks.Sink"),
        (f"{HERE}:WriteOnlyStub", r"WriteOnlyStub does not implement deliver\(records\)"),
        ("splunk", r"unknown audit sink type 'splunk'; known: jsonl, loki, .*package.module:Cl"),
    ],
)
def test_a_sink_path_that_does_not_meet_the_contract_is_refused(kind, message):
    with pytest.raises(SinkConfigError, match=message):
        make_sink({"type": kind, "label": "x"})


def test_a_third_party_sinks_options_are_checked_like_ours():
    with pytest.raises(
        SinkConfigError, match=r"audit sink recording: limit: expected an integer, got str$"
    ):
        make_sink({"type": f"{HERE}:RecordingSink", "label": "x", "limit": "ten"})
    with pytest.raises(SinkConfigError, match=r"RecordingSink accepts: label, limit, name"):
        make_sink({"type": f"{HERE}:RecordingSink", "labels": "x"})
