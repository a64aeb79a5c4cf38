"""Sink options as typed fields: checked before a sink is built, errors that list what is
accepted, and a meaning for every option (the reference page is generated from them)."""

from __future__ import annotations

import pytest

from sovereign_hub.audit.sinks import SINKS, SinkConfigError, make_sink
from sovereign_hub.audit.sinks.options import options_of


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"type": "syslog", "host": "siem", "port": "6514"},
            r"audit sink syslog: port: expected an integer, got '6514' \(str\)",
        ),
        (
            {"type": "syslog", "host": "siem", "tls": "yes"},
            r"tls: expected true or false",
        ),
        ({"type": "syslog", "host": "siem", "port": True}, r"port: expected an integer"),
        (
            {"type": "loki", "url": "http://loki", "labels": {"team": 7}},
            r"labels: expected a mapping of text to text",
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
