"""The audit viewer: queries on SQLite and a real PostgreSQL, and the service in the
sandbox's real hub (OAuth, the custom scope, refusals, escaping, exports)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from tornado.escape import xhtml_escape

from sovereign_hub.audit import schemas
from sovereign_hub.audit.trail import AuditTrail
from sovereign_hub.audit.viewer.app import csv_cell
from sovereign_hub.audit.viewer.charts import bar_chart
from sovereign_hub.audit.viewer.overview import _gpu_hours, overview
from sovereign_hub.audit.viewer.query import EVENTS, BadFilter, Query, Store
from sovereign_hub.sandbox.oidc import login_via_provider
from tests.test_sandbox import interrupt, launch

KEY = "viewer-test-key-" + "v" * 32
EVIL = "<script>alert('x')</script><img src=x onerror=alert(1)>"
INJECTIONS = ["' OR '1'='1", "x'; DROP TABLE audit_events; --", '" OR 1=1 --', "%' OR 'a' LIKE '%"]


def fill(trail: AuditTrail, n: int = 30) -> None:
    for i in range(n):
        user = ("ana", "bob", "carol")[i % 3]
        trail.emit(
            schemas.SPAWN_REQUESTED,
            {"actor": user, "subject": user, "server": "", "profile": "cpu-small"},
        )
        if user == "bob":
            trail.emit(schemas.SPAWN_DENIED, {
                "actor": user, "subject": user, "server": "", "profile": "gpu-a100",
                "reasons": [{"code": "profile_not_entitled", "message": f"not for bob {i} {EVIL}"}]})  # fmt: skip
        else:
            trail.emit(schemas.SERVER_STARTED, {
                "actor": user, "subject": user, "server": "", "profile": "cpu-small",
                "region": "eu" if user == "ana" else "us", "image": "q/x@sha256:" + "a" * 64,
                "digest": "sha256:" + "a" * 64, "gpus": 0, "node": "n1", "cluster": "hub"})  # fmt: skip
            trail.emit(schemas.SERVER_STOPPED, {
                "actor": "admin", "subject": user, "server": "", "gpus": 0,
                "reason": "entitlement_lost" if i == 3 else "user", "cluster": "hub"})  # fmt: skip
    trail.emit(schemas.API_ACTION, {"actor": "admin", "subject": "ana", "method": "DELETE",
                                    "route": "/hub/api/users/ana/server", "target_user": "ana",
                                    "status": 204})  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, monkeypatch) -> Iterator[Store]:
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", KEY)
    if request.param == "sqlite":
        location = str(tmp_path / "audit.sqlite")
        sink = {"type": "sqlite", "path": location}
    else:
        location = request.getfixturevalue("pg_url")
        sink = {"type": "postgresql", "dsn": location}
    trail = AuditTrail(spool_dir=str(tmp_path / "spool"), sinks=[sink], hub_instance="h").start()
    fill(trail)
    assert trail.drain()
    trail.stop()
    store = Store(location)
    yield store
    store.close()


def test_pages_are_newest_first_and_keyset_paging_sees_every_row_once(store):
    seen, after = [], ""
    while True:
        rows, after = store.page(Query(), after=after, limit=7)
        seen += rows
        if not after:
            break
    # 81 events and the epoch's first record; checkpoints are proofs, not shown
    assert len(seen) == len({r["id"] for r in seen}) == 82
    assert {r["event"] for r in seen} >= {"epoch-started"}
    assert "checkpoint" not in {r["event"] for r in seen}
    keys = [(r["time"], r["id"]) for r in seen]
    assert keys == sorted(keys, reverse=True)


def test_filters_combine(store):
    rows, _ = store.page(Query(user="ana", event="server-started", region="eu"), limit=100)
    assert len(rows) == 10
    assert {(r["data"]["subject"], r["event"], r["data"]["region"]) for r in rows} == {
        ("ana", "server-started", "eu")
    }
    refused, _ = store.page(Query(outcome="refused"), limit=100)
    assert {r["event"] for r in refused} == {"spawn-denied"}
    assert len(refused) == 10
    digest, _ = store.page(Query(digest="sha256:" + "a" * 64), limit=100)
    assert len(digest) == 20
    future, _ = store.page(Query(since="2999-01-01"), limit=100)
    assert future == []


@pytest.mark.parametrize("field", ["user", "region"])
@pytest.mark.parametrize("value", INJECTIONS)
def test_no_filter_changes_the_query(store, field, value):
    rows, _ = store.page(Query(**{field: value}), limit=100)
    assert rows == []
    assert len(store.page(Query(), limit=200)[0]) == 82  # the table is intact


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"event": "login' OR '1'='1"}, "event"),
        ({"outcome": "all"}, "outcome"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01'; --"}, "until"),
        ({"digest": "sha256:abc"}, "digest"),
        ({"user": "x" * 300}, "user"),
    ],
)
def test_bad_filters_are_refused_naming_the_field(raw, message):
    with pytest.raises(BadFilter, match=message):
        Query.parse(raw)


def test_a_forged_cursor_is_refused(store):
    with pytest.raises(BadFilter, match="after"):
        store.page(Query(), after="not-a-cursor")


def test_sessions_and_anomalies(store):
    (session, *_) = store.sessions("bob")
    assert session["outcome"] == "refused"
    assert session["reasons"][0]["code"] == "profile_not_entitled"
    ana = store.sessions("ana")
    assert ana[0]["outcome"] == "stopped (user)"
    assert ana[0]["digest"] == "sha256:" + "a" * 64
    groups = store.anomalies()
    assert len(groups["refused spawns"]) == 10
    assert [r["data"]["subject"] for r in groups["entitlement losses"]] == ["ana"]
    assert [r["data"]["route"] for r in groups["admin actions on other users"]] == [
        "/hub/api/users/ana/server"
    ]


def test_the_overview_counts_by_day_region_outcome_and_reason(store):
    ov = overview(store, datetime.now(UTC))
    assert len(ov.days) == 14
    assert ov.totals == {"logins": 0, "denials": 10, "starts": 20, "stops": 20}
    assert sum(ov.series["starts"]) == 20
    assert ov.regions == {
        "(none)": {"ok": 0, "refused": 10, "failed": 0},
        "eu": {"ok": 10, "refused": 0, "failed": 0},
        "us": {"ok": 10, "refused": 0, "failed": 0},
    }
    assert [(code, n) for code, _, n in ov.reasons] == [("profile_not_entitled", 10)]
    assert ov.gpu_hours == {}
    # A window that ends before the events counts none of them.
    before = overview(store, datetime(2020, 1, 1, tzinfo=UTC), days=3)
    assert before.regions == {}
    assert before.days == ("2019-12-30", "2019-12-31", "2020-01-01")


def test_gpu_hours_pair_each_start_with_its_stop_and_count_running_servers_until_now():
    def row(time, event, **data):
        return {"time": time, "event": event, "data": json.dumps(data)}

    rows = [
        row("2026-11-01T10:00:00Z", "server-started", subject="ana", server="", gpus=2,
            quota_group="eu-researchers"),
        row("2026-11-01T10:00:00Z", "server-started", subject="bob", server="", gpus=0),
        row("2026-11-01T11:30:00Z", "server-stopped", subject="ana", server=""),
        row("2026-11-01T12:00:00Z", "server-started", subject="ana", server="big", gpus=1,
            quota_group="eu-researchers"),
        row("2026-11-01T12:00:00Z", "server-started", subject="ada", server="", gpus=4,
            quota_group="gpu-pool"),
        row("2026-11-01T12:15:00Z", "server-stopped", subject="ada", server=""),
    ]  # fmt: skip
    now = datetime(2026, 11, 1, 14, 0, tzinfo=UTC)
    # ana: 2 GPUs x 1.5 h, then 1 GPU x 2 h still running; ada: 4 x 0.25 h
    assert _gpu_hours(rows, now) == {"eu-researchers": 5.0, "gpu-pool": 1.0}


def test_a_bar_chart_is_inline_svg_with_a_named_link_per_bar():
    svg = bar_chart("Denials <b>", ["2026-11-01", "2026-11-02"], [3, 0], ["/t?a=1&b=2", "/t?x"])
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert svg.count("<a ") == 2
    assert 'href="/t?a=1&amp;b=2"' in svg
    assert 'aria-label="Denials &lt;b&gt;, 2026-11-01: 3"' in svg
    assert "<b>" not in svg
    assert "script" not in svg


def test_csv_cells_are_never_formulas():
    assert csv_cell('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert csv_cell("+1") == "'+1"
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert csv_cell("ana") == "ana"


# -- the service in a real hub -------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_with_events(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viewer")
    running = launch(tmp)
    url = running["url"]
    # ana starts a CPU server, bob is refused the GPU profile, carol cannot log in.
    ana, _ = login_via_provider(url, "ana")
    xsrf = ana.cookies.get("_xsrf", path="/hub/")
    r = ana.post(f"{url}/hub/spawn", data={"profile": "cpu-small", "region-cpu-small": "eu", "_xsrf": xsrf},
                 timeout=60, allow_redirects=False)  # fmt: skip
    assert r.status_code == 302
    # Started means ready: the pod's readiness probe waits for JupyterLab to answer.
    deadline = time.monotonic() + 120
    while not ana.get(f"{url}/hub/api/users/ana", headers={"X-XSRFToken": xsrf},
                      timeout=10).json()["servers"].get("", {}).get("ready"):  # fmt: skip
        assert time.monotonic() < deadline, "ana's server never became ready"
        time.sleep(0.5)
    bob, _ = login_via_provider(url, "bob")
    forged = bob.post(f"{url}/hub/api/users/bob/server", json={"profile": "gpu-a100", "region": "eu"},
                      headers={"X-XSRFToken": bob.cookies.get("_xsrf", path="/hub/")}, timeout=30)  # fmt: skip
    assert forged.status_code == 403
    login_via_provider(url, "carol")
    # An event whose text is HTML, as an attacker-chosen value might be.
    # The sandbox hub's key for the injector only: restored below, so that no later test
    # (in this process or its subprocesses) inherits it.
    previous = os.environ.get("SOVEREIGN_AUDIT_HMAC_KEY")
    os.environ["SOVEREIGN_AUDIT_HMAC_KEY"] = (running["state"] / "audit-hmac-key").read_text()
    injector = AuditTrail(spool_dir=str(tmp / "inj-spool"), hub_instance="injector",
                          sinks=[{"type": "sqlite", "path": running["store"]}]).start()  # fmt: skip
    injector.emit(schemas.LOGIN_DENIED, {"actor": "mallory", "subject": "mallory",
                                         "reason_code": "x", "reason": EVIL})  # fmt: skip
    injector.emit(schemas.SHARE_GRANTED, {"actor": "ana", "subject": "ana", "server": "",
                                          "region": "eu", "recipient_kind": "user",
                                          "recipient": "carla" + EVIL,
                                          "expires_at": "2999-01-01T00:00:00+00:00"})  # fmt: skip
    assert injector.drain()
    injector.stop()
    if previous is None:
        del os.environ["SOVEREIGN_AUDIT_HMAC_KEY"]
    else:
        os.environ["SOVEREIGN_AUDIT_HMAC_KEY"] = previous
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(
                f"{url}/services/audit/", timeout=5, allow_redirects=False
            ).status_code in (302, 403):
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    yield running
    interrupt(running["proc"])


def viewer(
    session: requests.Session, url: str, path: str = "timeline", **params
) -> requests.Response:
    return session.get(f"{url}/services/audit/{path}", params=params, timeout=60)


def test_an_auditor_filters_by_user_and_sees_the_session(sandbox_with_events):
    url = sandbox_with_events["url"]
    sam, _ = login_via_provider(url, "sam")
    page = viewer(sam, url, user="bob")
    assert page.status_code == 200, page.text
    assert "spawn-denied" in page.text
    session = viewer(sam, url, "session", user="ana")
    assert session.status_code == 200
    assert "cpu-small" in session.text
    assert "sha256:" in session.text
    anomalies = viewer(sam, url, "anomalies")
    assert "Refused logins" in anomalies.text
    assert "carol" in anomalies.text


def test_event_text_is_shown_as_text_never_as_html(sandbox_with_events):
    url = sandbox_with_events["url"]
    sam, _ = login_via_provider(url, "sam")
    page = viewer(sam, url, user="mallory")
    assert page.status_code == 200
    assert EVIL not in page.text
    assert xhtml_escape(EVIL) in page.text  # shown, as text
    assert "script-src" not in page.headers["Content-Security-Policy"]  # no script may run at all


def test_the_overview_is_the_first_page_and_links_to_the_filtered_timeline(sandbox_with_events):
    url = sandbox_with_events["url"]
    sam, _ = login_via_provider(url, "sam")
    page = viewer(sam, url, "")
    assert page.status_code == 200, page.text
    text = page.text
    assert "<svg" in text
    assert "<script" not in text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    for name in ("logins", "denials", "starts", "stops"):
        assert f'id="chart-{name}"' in text
    assert "Logins: 0" not in text  # ana, bob and carol logged in (carol refused)
    assert "Denials: " in text
    assert "<code>profile_not_entitled</code>" in text
    assert 'id="chain-summary"' in text
    # The EU row's refused cell leads to the timeline filtered to exactly those events.
    link = re.search(r'href="(/services/audit/timeline\?region=eu&amp;outcome=refused[^"]*)"', text)
    assert link, text
    filtered = sam.get(url + link.group(1).replace("&amp;", "&"), timeout=60)
    assert filtered.status_code == 200
    body = filtered.text.split('<table id="timeline">', 1)[1]
    events = set(re.findall(r'<td class="[^"]*">([a-z-]+)</td>', body))
    assert events == {"spawn-denied"}


def test_the_shares_page_lists_active_shares_as_text_and_is_audited(sandbox_with_events):
    url = sandbox_with_events["url"]
    sam, _ = login_via_provider(url, "sam")
    page = viewer(sam, url, "shares")
    assert page.status_code == 200, page.text
    row = page.text.split('<table id="shares">')[1]
    assert "carla&lt;script&gt;" in row
    assert "<script>" not in row
    assert "2999-01-01" in row
    timeline = viewer(sam, url, event="audit-viewed")
    assert "shares" in timeline.text


def test_without_the_scope_a_signed_in_user_gets_a_clear_403(sandbox_with_events):
    url = sandbox_with_events["url"]
    bob, _ = login_via_provider(url, "bob")
    page = viewer(bob, url)
    assert page.status_code == 403
    assert "custom:audit:read" in page.text
    assert "spawn-denied" not in page.text


def test_without_login_the_viewer_sends_you_to_the_hub(sandbox_with_events):
    url = sandbox_with_events["url"]
    page = requests.get(f"{url}/services/audit/?user=ana", timeout=30, allow_redirects=False)
    assert page.status_code == 302
    assert "/hub/api/oauth2/authorize" in page.headers["Location"]


@pytest.mark.parametrize(
    "field", ["user", "event", "since", "until", "region", "digest", "outcome"]
)
def test_every_filter_resists_injection_over_http(sandbox_with_events, field):
    url = sandbox_with_events["url"]
    sam, _ = login_via_provider(url, "sam")
    for value in INJECTIONS:
        page = viewer(sam, url, **{field: value})
        assert page.status_code in (200, 400), page.text
        if page.status_code == 400:
            assert field in page.text  # says which filter is wrong
        else:
            assert "No events match." in page.text
    assert "spawn-denied" in viewer(sam, url).text  # the trail is still there


def test_exports_follow_the_filter_and_views_are_audited(sandbox_with_events):
    url = sandbox_with_events["url"]
    sam, _ = login_via_provider(url, "sam")
    exported = viewer(sam, url, "export.csv", user="bob")
    assert exported.status_code == 200
    assert exported.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows
    assert {r["subject"] for r in rows} == {"bob"}
    lines = viewer(sam, url, "export.jsonl", user="bob").text.splitlines()
    assert {json.loads(line)["data"]["subject"] for line in lines} == {"bob"}
    store = Store(sandbox_with_events["store"])
    deadline = time.monotonic() + 30
    viewed = []
    while time.monotonic() < deadline and not any(
        r["data"]["view"] == "export-csv" for r in viewed
    ):
        viewed, _ = store.page(Query(event="audit-viewed"), limit=200)
        time.sleep(0.5)
    csv_views = [r["data"] for r in viewed if r["data"]["view"] == "export-csv"]
    assert csv_views[0]["actor"] == "sam"
    assert csv_views[0]["filters"] == {"user": "bob"}


def test_chain_status_is_verified_on_demand_and_the_cli_agrees(sandbox_with_events):
    url = sandbox_with_events["url"]
    sam, _ = login_via_provider(url, "sam")
    chain = viewer(sam, url, "chain")
    assert "has not been verified" in chain.text
    xsrf = sam.cookies.get("_xsrf", path="/services/audit/")
    done = sam.post(f"{url}/services/audit/chain", data={"_xsrf": xsrf}, timeout=60)
    assert done.status_code == 200
    assert 'id="chain-status"' in done.text
    assert "Intact" in done.text
    assert "a new hub" in done.text  # each hub's epoch boundary is shown
    state = sandbox_with_events["state"]
    verified = subprocess.run(
        [str(Path(sys.executable).with_name("sovhub")), "audit", "verify", sandbox_with_events["store"],
         "--key-file", str(state / "audit-hmac-key")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # A running hub's newest records await their first checkpoint: intact (0), or intact
    # but not yet proven complete (3); never broken.
    assert verified.returncode in (0, 3), verified.stdout + verified.stderr
    assert "chain intact" in verified.stdout


def test_in_a_pod_the_viewer_listens_on_its_own_address_not_the_service_name(tmp_path):
    """The chart's service URL names the hub's Service (a ClusterIP no pod can bind).

    The viewer must listen on the address it is given instead; here 127.0.0.1
    stands in for the pod's 0.0.0.0 so the test stays on loopback. Before the
    fix it tried to bind the Service's name and exited.
    """
    from sovereign_hub.sandbox.hubprocess import free_port

    port = free_port()
    (tmp_path / "key").write_text("k" * 64)
    env = {
        **os.environ,
        "JUPYTERHUB_SERVICE_URL": f"http://rel-sovereign-hub-hub.invalid:{port}",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/audit/",
        "JUPYTERHUB_API_TOKEN": "t" * 32,
        "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",
        "JUPYTERHUB_CLIENT_ID": "service-audit",
        "SOVEREIGN_AUDIT_STORE": str(tmp_path / "audit.sqlite"),
        "SOVEREIGN_AUDIT_HMAC_KEY_FILE": str(tmp_path / "key"),
        "SOVEREIGN_AUDIT_VIEWER_SPOOL": str(tmp_path / "spool"),
        "SOVEREIGN_AUDIT_VIEWER_IP": "127.0.0.1",
    }
    log = tmp_path / "viewer.log"
    with open(log, "wb") as out:
        # Started with SIGINT ignored, as a process started in the background inherits it:
        # JupyterHub's SIGINT must still stop the viewer.
        viewer = subprocess.Popen(
            [sys.executable, "-m", "sovereign_hub.audit.viewer"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert viewer.poll() is None, log.read_text()
            try:
                answer = requests.get(
                    f"http://127.0.0.1:{port}/services/audit/", timeout=2, allow_redirects=False
                )
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert answer.status_code in (302, 403)  # the viewer's own answer: log in first
        # JupyterHub stops a managed service with SIGINT: a clean stop, no traceback.
        viewer.send_signal(signal.SIGINT)
        assert viewer.wait(timeout=30) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        if viewer.poll() is None:
            viewer.terminate()
            viewer.wait(timeout=30)


def test_active_shares_are_grants_not_revoked_nor_expired(tmp_path, monkeypatch):
    from datetime import UTC, datetime

    from sovereign_hub.audit.viewer.shares import active_shares

    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", KEY)
    location = str(tmp_path / "audit.sqlite")
    trail = AuditTrail(
        spool_dir=str(tmp_path / "spool"),
        sinks=[{"type": "sqlite", "path": location}],
        hub_instance="h",
    ).start()
    share = {"actor": "ana", "subject": "ana", "server": "", "region": "eu"}
    later, past = "2026-11-29T20:00:00+00:00", "2026-11-29T10:00:00+00:00"
    for recipient, kind, expires in [
        ("carla", "user", later),  # active
        ("dora", "user", later),  # revoked below
        ("eu-researchers", "group", past),  # expired
        ("", "code", later),  # a code grants nothing until exchanged
        ("erin", "user", ""),  # recorded without an end: listed, never a 500
    ]:
        trail.emit(
            schemas.SHARE_GRANTED,
            {**share, "recipient_kind": kind, "recipient": recipient, "expires_at": expires},
        )
    trail.emit(
        schemas.SHARE_REVOKED,
        {**share, "actor": "system", "recipient_kind": "user", "recipient": "dora",
         "reason_code": "recipient_not_allowed", "reason": "left the group"},
    )  # fmt: skip
    assert trail.drain()
    trail.stop()
    store = Store(location)
    try:
        rows = active_shares(store.share_events(), datetime(2026, 11, 29, 12, tzinfo=UTC))
    finally:
        store.close()
    assert [(r["data"]["recipient_kind"], r["data"]["recipient"]) for r in rows] == [
        ("user", "erin"),
        ("user", "carla"),
    ]


def test_every_event_kind_but_the_trails_proofs_can_be_filtered():
    """A new event kind (dataset-mounted, gpu-queued, share-granted...) is filterable the day
    its schema lands; checkpoints and retention records are for `sovhub audit verify`."""
    families = {path.parent.name for path in schemas.schema_files()}
    assert set(EVENTS) == families - {"checkpoint", "retention"}
    assert {"dataset-mounted", "gpu-queued", "share-granted", "share-accessed", "login"} <= set(
        EVENTS
    )
    assert Query.parse({"event": "dataset-mounted"}).event == "dataset-mounted"
    with pytest.raises(BadFilter, match="checkpoint"):
        Query.parse({"event": "checkpoint"})
