"""Audit sinks for SIEMs and log stores.

Syslog is tested against a real rsyslogd (Debian's) over TCP and TLS. Grafana
Loki, OpenSearch and the webhook are *contract tests*: no server for them
can run here, so they post to a recording receiver that checks each request
against the documented wire format and answers as the real API does.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from sovereign_hub.audit import schemas
from sovereign_hub.audit.sinks import SinkConfigError, make_sink
from sovereign_hub.audit.sinks.syslog import format_message
from sovereign_hub.audit.trail import AuditTrail
from sovereign_hub.audit.verify import verify
from tests.conftest import require_program
from tests.receivers import Receiver, Request, Rsyslog

KEY = "sink-test-key-" + "s" * 32


@pytest.fixture(autouse=True)
def hmac_key(monkeypatch):
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", KEY)


def emit_some(tmp_path: Path, sinks: list[dict], n: int = 20) -> AuditTrail:
    trail = AuditTrail(
        spool_dir=str(tmp_path / "spool"), sinks=sinks, hub_instance="hub-1", retry_max_seconds=0.5
    ).start()
    for i in range(n):
        if i % 4 == 3:
            trail.emit(
                schemas.SPAWN_DENIED,
                {
                    "actor": "bob",
                    "subject": "bob",
                    "server": "",
                    "profile": "gpu-a100",
                    "reasons": [{"code": "profile_not_entitled", "message": 'no "gpu" ] for bob'}],
                },
            )
        else:
            trail.emit(
                schemas.LOGIN, {"actor": "zoë", "subject": "zoë", "groups": ["g"], "admin": False}
            )
    return trail


@pytest.fixture
def rsyslog(tmp_path):
    require_program("rsyslogd", "/usr/sbin/rsyslogd", "rsyslog")
    server = Rsyslog(tmp_path / "rsyslog")
    yield server
    server.stop()


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_syslog_rfc5424_reaches_a_real_rsyslog(tmp_path, rsyslog, tls):
    port = rsyslog.tls_port if tls else rsyslog.tcp_port
    spec = {"type": "syslog", "host": "127.0.0.1", "port": port, "tls": tls}
    if tls:
        spec["ca_file"] = str(rsyslog.tls["ca"])
    trail = emit_some(tmp_path, [spec])
    assert trail.drain()
    trail.stop()
    # 20 events, with the epoch's first record and the final checkpoint
    wait_for(lambda: len(rsyslog.messages()) == 22)
    messages = rsyslog.messages()
    denied = [m for m in messages if m["msgid"] == "spawn-denied"]
    logins = [m for m in messages if m["msgid"] == "login"]
    assert (len(denied), len(logins)) == (5, 15)
    # authpriv (10) * 8 + warning (4) for refusals, + notice (5) otherwise
    assert {m["pri"] for m in denied} == {"84"}
    assert {m["pri"] for m in logins} == {"85"}
    assert {m["hostname"] for m in messages} == {"hub-1"}
    assert {m["app"] for m in messages} == {"sovereign-hub"}
    # The JSON body is the whole record: the chain verifies from what the SIEM holds.
    records = [json.loads(m["msg"].lstrip("\ufeff")) for m in messages]
    records.sort(key=lambda r: r["seq"])
    assert verify(records, KEY.encode()).proven
    assert records[1]["data"]["subject"] == "zoë"
    first = next(m for m in messages if json.loads(m["msg"].lstrip("\ufeff"))["seq"] == 1)
    assert first["sd"] == (
        f'[sovereignHub@32473 id="{records[0]["id"]}" seq="1" mac="{records[0]["mac"]}"]'
    )


def test_syslog_reconnects_after_the_receiver_restarts(tmp_path, rsyslog):
    """rsyslogd stops and comes back on the same port: the sink reconnects, nothing is lost."""
    spec = {"type": "syslog", "host": "127.0.0.1", "port": rsyslog.tcp_port, "tls": False}
    trail = emit_some(tmp_path, [spec], n=5)
    assert trail.drain()
    wait_for(lambda: len(rsyslog.messages()) == 6)  # the epoch's first record and 5 events
    rsyslog.stop()
    time.sleep(0.5)
    for _ in range(5):
        trail.emit(schemas.LOGOUT, {"actor": "ana", "subject": "ana"})
    wait_for(lambda: trail.shippers[0].failures > 0)
    again = Rsyslog(rsyslog.directory, rsyslog.tcp_port, rsyslog.tls_port)
    try:
        assert trail.drain()
        trail.stop()
        wait_for(lambda: len(again.messages()) == 12)  # and the final checkpoint
        seqs = sorted(json.loads(m["msg"].lstrip("\ufeff"))["seq"] for m in again.messages())
        assert seqs == list(range(1, 13))
    finally:
        again.stop()


def test_the_syslog_message_escapes_structured_data_and_header_fields():
    record = {
        "seq": 3, "id": 'a"b]c\\d', "time": "2026-11-26T10:00:00.000001Z", "hub": "hub one",
        "schema": schemas.SPAWN_DENIED, "version": "1", "data": {}, "prev": "p", "mac": "m",
    }  # fmt: skip
    message = format_message(record, 10, "x@32473").decode()
    assert message.startswith(
        "<84>1 2026-11-26T10:00:00.000001Z hubone sovereign-hub - spawn-denied "
    )
    assert '[x@32473 id="a\\"b\\]c\\\\d" seq="3" mac="m"]' in message
    assert "\ufeff{" in message


def loki_answer(request: Request) -> tuple[int, dict | None]:
    """Loki's push API: JSON streams of [ns-timestamp string, line string]; 204 No Content."""
    body = request.body
    if request.headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    if request.path != "/loki/api/v1/push" or request.headers["content-type"] != "application/json":
        return 404, {"message": "wrong endpoint or content type"}
    push = json.loads(body)
    for stream in push["streams"]:
        if not all(isinstance(v, str) for v in stream["stream"].values()):
            return 400, {"message": "labels must be strings"}
        for ts, line in stream["values"]:
            if not (isinstance(ts, str) and ts.isdigit() and isinstance(line, str)):
                return 400, {"message": "entries are [string ns, string line]"}
    return 204, None


def test_loki_contract_push_api(tmp_path):
    receiver = Receiver(loki_answer)
    try:
        trail = emit_some(tmp_path, [{"type": "loki", "url": receiver.url, "tenant": "security"}])
        assert trail.drain()
        trail.stop()
    finally:
        receiver.close()
    entries = []
    for request in receiver.requests:
        assert request.headers["x-scope-orgid"] == "security"
        for stream in json.loads(request.body)["streams"]:
            labels = stream["stream"]
            assert set(labels) == {"app", "hub", "event"}  # users stay out of the index
            for ts, line in stream["values"]:
                record = json.loads(line)
                assert labels["event"] == record["schema"].rstrip("/").split("/")[-2]
                # The entry's time is the event's, to the microsecond, in nanoseconds.
                assert ts.endswith("000")
                entries.append(record)
    assert sorted(r["seq"] for r in entries) == list(range(1, 23))  # + epoch start, checkpoint


def test_loki_errors_are_retried_not_lost(tmp_path):
    failures = {"left": 3}

    def flaky(request: Request) -> tuple[int, dict | None]:
        if failures["left"]:
            failures["left"] -= 1
            return 503, {"message": "ingester unavailable"}
        return loki_answer(request)

    receiver = Receiver(flaky)
    try:
        trail = emit_some(tmp_path, [{"type": "loki", "url": receiver.url}], n=8)
        assert trail.drain()
        assert trail.shippers[0].failures == 3
        trail.stop()
    finally:
        receiver.close()
    delivered = {
        json.loads(line)["seq"]
        for r in receiver.requests[3:]
        for s in json.loads(r.body)["streams"]
        for _, line in s["values"]
    }
    assert delivered == set(range(1, 11))  # 8 events, the epoch start, the final checkpoint


class FakeIndex:
    """The bulk API as OpenSearch documents it: create-by-id answers 409 for a known id."""

    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}

    def __call__(self, request: Request) -> tuple[int, dict | None]:
        if request.path != "/_bulk" or request.headers["content-type"] != "application/x-ndjson":
            return 400, {"error": "bad request"}
        text = request.body.decode()
        if not text.endswith("\n"):
            return 400, {"error": {"type": "illegal_argument_exception",
                                   "reason": "The bulk request must be terminated by a newline"}}  # fmt: skip
        lines = text.splitlines()
        items, errors = [], False
        for action_line, doc_line in zip(lines[0::2], lines[1::2], strict=True):
            action = json.loads(action_line)["create"]
            doc = json.loads(doc_line)
            if action["_id"] in self.docs:
                errors = True
                items.append({"create": {"_id": action["_id"], "status": 409,
                              "error": {"type": "version_conflict_engine_exception"}}})  # fmt: skip
            else:
                self.docs[action["_id"]] = {"_index": action["_index"], **doc}
                items.append({"create": {"_id": action["_id"], "status": 201}})
        return 200, {"took": 1, "errors": errors, "items": items}


def test_opensearch_contract_bulk_api_and_deduplication(tmp_path):
    index = FakeIndex()
    receiver = Receiver(index)
    spec = {"type": "opensearch", "url": receiver.url, "index": "audit-eu"}
    try:
        trail = emit_some(tmp_path, [spec])
        assert trail.drain()
        trail.stop()
        # A hub that lost its acknowledgement sends everything again: nothing is doubled.
        sink = make_sink(spec)
        records = [
            {k: v for k, v in d.items() if k not in ("_index", "@timestamp")}
            for d in index.docs.values()
        ]
        sink.deliver(records)
        sink.close()
    finally:
        receiver.close()
    assert len(index.docs) == 22  # 20 events, the epoch start, the final checkpoint
    doc = next(iter(index.docs.values()))
    assert doc["_index"] == "audit-eu"
    assert doc["@timestamp"] == doc["time"]
    assert set(index.docs) == {d["id"] for d in index.docs.values()}


def test_opensearch_item_failures_fail_the_batch(tmp_path):
    def mapping_error(request: Request) -> tuple[int, dict | None]:
        lines = request.body.decode().splitlines()
        return 200, {"errors": True, "items": [
            {"create": {"status": 400, "error": {"type": "mapper_parsing_exception"}}}
            for _ in lines[0::2]
        ]}  # fmt: skip

    receiver = Receiver(mapping_error)
    sink = make_sink({"type": "opensearch", "url": receiver.url})
    try:
        with pytest.raises(RuntimeError, match=r"2 of 2 records refused.*mapper_parsing_exception"):
            sink.deliver([{"id": str(i), "time": "t", "seq": i, "hub": "h"} for i in (1, 2)])
    finally:
        sink.close()
        receiver.close()


def test_webhook_contract_signature_idempotency_and_bearer_token(tmp_path):
    (tmp_path / "token").write_text("tok-123\n")
    (tmp_path / "signing").write_text("sign-key\n")
    receiver = Receiver(lambda _r: (202, {"accepted": True}))
    try:
        trail = emit_some(
            tmp_path,
            [{
                "type": "webhook", "url": receiver.url + "/hooks/audit",
                "token_file": str(tmp_path / "token"),
                "signing_key_file": str(tmp_path / "signing"),
            }],
        )  # fmt: skip
        assert trail.drain()
        trail.stop()
    finally:
        receiver.close()
    seqs = []
    for request in receiver.requests:
        assert request.path == "/hooks/audit"
        assert request.headers["authorization"] == "Bearer tok-123"
        expected = hmac.new(b"sign-key", request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-sovereign-signature"] == f"sha256={expected}"
        records = json.loads(request.body)["records"]
        # The epoch keeps a hub that lost its spool from reusing an earlier batch's key.
        assert request.headers["idempotency-key"] == (
            f"hub-1:{records[0]['epoch']}:{records[0]['seq']}-{records[-1]['seq']}"
        )
        seqs += [r["seq"] for r in records]
    assert seqs == list(range(1, 23))  # 20 events, the epoch start, the final checkpoint


def test_no_credential_appears_in_a_delivery_error(tmp_path, caplog):
    (tmp_path / "token").write_text("very-secret-token")
    receiver = Receiver(lambda r: (401, {"echo": r.headers.get("authorization")}))
    sink = make_sink(
        {"type": "webhook", "url": receiver.url, "token_file": str(tmp_path / "token")}
    )
    try:
        with pytest.raises(RuntimeError) as caught:
            sink.deliver([{"id": "1", "seq": 1, "hub": "h"}])
    finally:
        sink.close()
        receiver.close()
    assert "401" in str(caught.value)
    assert "very-secret-token" not in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "syslog", "host": "siem", "facility": "security"}, "facility"),
        ({"type": "syslog", "host": "siem", "sd_id": "no spaces allowed"}, "sd_id"),
        ({"type": "syslog", "host": "siem", "cert_file": "/c.pem"}, "cert_file and key_file"),
        ({"type": "loki", "url": "loki:3100"}, "url"),
        ({"type": "webhook", "url": "https://x", "token_env": "NO_SUCH_VAR_HERE"}, "token_env"),
        (
            {"type": "webhook", "url": "https://x", "headers": {"Authorization": "Bearer x"}},
            "Authorization",
        ),
        ({"type": "opensearch", "url": "https://x", "password_file": "/nope"}, "password_file"),
        ({"type": "kafka"}, "unknown audit sink type"),
    ],
)
def test_misconfigured_sinks_name_the_option(spec, message):
    with pytest.raises(SinkConfigError, match=message):
        make_sink(spec)
