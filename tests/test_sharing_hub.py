"""Governed sharing in a real JupyterHub and proxy, on the ``kube`` fixture's cluster.

JupyterHub's own sharing API (``/hub/api/shares``) with the Sovereign handlers
installed: the policy decides who may share with whom, the recipient must be
entitled to the server's region, shares end at the policy's maximum, and the
audit trail records each grant, refusal and revocation. Every hub here has its
``c.JupyterHub.tornado_settings`` assigned wholesale after the sharing is
installed, as an admin's ``hub.extraConfig`` may: the governance must not depend
on them. Kubernetes is the project's emulator unless SOVEREIGN_TEST_KUBECONFIG
names a real cluster.
"""

from __future__ import annotations

import html
import re
import time
from datetime import datetime, timedelta
from pathlib import Path

import requests

import tests.test_spawner_hub as hub_tests
from sovereign_hub.audit.store import read
from sovereign_hub.sandbox.hubprocess import Hub
from tests.conftest import eventually
from tests.test_spawner_hub import add_users, login, spawn

start_hub = hub_tests.start_hub
policy_copy = hub_tests.policy_copy

SHARING = """
c.JupyterHub.load_roles.append(
    {{"name": "user", "scopes": ["self", "shares!user", "read:users:name", "read:groups:name"]}}
)
c.AuditTrail.spool_dir = {spool!r}
c.AuditTrail.hub_instance = "hub-test"
c.AuditTrail.sinks = [{{"type": "sqlite", "path": {store!r}}}]
from sovereign_hub import sharing
from sovereign_hub.audit import hub_reporter
sharing.install(c)
c.SovereignSpawner.reporter = c.GovernedSharing.reporter = hub_reporter(c)
c.GovernedSharing.reconcile_interval = 1
# As an admin's hub.extraConfig may (the chart runs it after the sharing is installed):
# the Tornado settings assigned wholesale. The sharing must stay governed all the same.
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 10}}
"""


def token_of(hub: Hub, user: str) -> str:
    response = hub.api("POST", f"/users/{user}/tokens", json={"note": "sharing test"})
    assert response.status_code == 201, response.text
    return response.json()["token"]


def as_user(hub: Hub, token: str, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"token {token}"}
    return requests.request(method, f"{hub.url}{path}", headers=headers, timeout=30, **kwargs)


def enter_server(hub: Hub, user: str, owner: str) -> tuple[requests.Session, requests.Response]:
    """Sign in as ``user`` and open ``owner``'s server as a browser does, accepting
    JupyterHub's "authorize" page when it asks; returns the session and the last page."""
    session = login(hub, user)
    page = session.get(f"{hub.url}/user/{owner}/", timeout=30)
    if "/hub/api/oauth2/authorize" in page.url and page.status_code == 200:
        fields = [("_xsrf", session.cookies.get("_xsrf", path="/hub/"))] + [
            ("scopes", html.unescape(v))
            for v in re.findall(r'type="hidden" name="scopes" value="([^"]*)"', page.text)
        ]
        page = session.post(page.url, data=fields, timeout=30)
    return session, page


def share_events(store, at_least: int = 0, wait: float = 30.0) -> list[tuple[str, dict]]:
    """The share records in the store, once there are ``at_least`` of them and no more came
    for a second (the trail ships records from its spool in the background, so the last of a
    request's records may land after its response)."""
    deadline = time.monotonic() + wait
    seen: list[tuple[str, dict]] | None = None
    while True:
        found = [
            (r["schema"].split("/")[-2], r["data"])
            for r in (read(str(store)) if store.exists() else [])
            if "/share-" in r["schema"]
        ]
        settled = seen is not None and len(found) == len(seen)
        if (settled and len(found) >= at_least) or time.monotonic() > deadline:
            return found
        seen = found
        time.sleep(1.0)


def ana_sharing(
    start_hub, policy_copy, tmp_path, monkeypatch, eu=("ana", "carla"), us=(), extra=""
) -> tuple[Hub, Path, str]:
    """A hub with the governed sharing and its audit trail (``tmp_path/audit.sqlite``), the
    ``eu`` users in eu-researchers and the ``us`` ones in us-analysts, and ana's EU server
    running: the hub, the trail's store and ana's token."""
    monkeypatch.setenv("SOVEREIGN_AUDIT_HMAC_KEY", "k" * 40)  # inherited by the hub process
    store = tmp_path / "audit.sqlite"
    config = SHARING.format(spool=str(tmp_path / "spool"), store=str(store))
    hub = start_hub(policy_copy, extra_config=config + extra)
    add_users(hub, "eu-researchers", *eu)
    if us:
        add_users(hub, "us-analysts", *us)
    assert spawn(hub, "ana", profile="cpu-small", region="eu").status_code in (201, 202)
    hub.wait_for_server("ana")
    return hub, store, token_of(hub, "ana")


async def test_ana_shares_with_an_eu_colleague_not_with_bob_and_the_share_expires(
    kube, start_hub, policy_copy, tmp_path, monkeypatch
):
    policy_copy.write_text(policy_copy.read_text().replace("maxMinutes: 480", "maxMinutes: 1"))
    hub, store, ana = ana_sharing(start_hub, policy_copy, tmp_path, monkeypatch,
                                  eu=("ana", "carla", "dora"), us=("bob",))  # fmt: skip

    def reaches(user: str) -> int:
        # A new token each time: the single-user server caches a token's answer
        # (HubAuth.cache_max_age), and each check must ask the hub afresh.
        return as_user(hub, token_of(hub, user), "GET", "/user/ana/api/status").status_code

    # Before any share, neither colleague reaches ana's server.
    assert reaches("carla") == 403

    granted = as_user(hub, ana, "POST", "/hub/api/shares/ana/", json={"user": "carla"})
    assert granted.status_code == 200, granted.text
    assert granted.json()["user"] == {"name": "carla"}
    assert granted.json()["expires_at"]
    assert reaches("carla") == 200

    refused = as_user(hub, ana, "POST", "/hub/api/shares/ana/", json={"user": "bob"})
    assert refused.status_code == 403
    assert "region 'eu'" in refused.json()["message"]
    assert "bob" in refused.json()["message"]
    assert reaches("bob") == 403
    # bob was not given anything: the hub lists carla's share only.
    listed = hub.api("GET", "/shares/ana/").json()["items"]
    assert [s["user"]["name"] for s in listed] == ["carla"]

    # dora leaves the group that made her a permitted recipient: the reconcile revokes.
    granted_at = time.monotonic()
    assert as_user(hub, ana, "POST", "/hub/api/shares/ana/", json={"user": "dora"}).ok
    assert reaches("dora") == 200
    assert hub.api("DELETE", "/groups/eu-researchers/users", json={"users": ["dora"]}).ok

    async def only_carla():
        items = hub.api("GET", "/shares/ana/").json()["items"]
        return [s["user"]["name"] for s in items] == ["carla"]

    await eventually(only_carla, timeout=15, interval=0.5)
    assert reaches("dora") == 403

    # A minute after the grant (the policy's maximum) the hub revokes carla's share ...

    async def revoked():
        return hub.api("GET", "/shares/ana/").json()["items"] == []

    try:
        await eventually(revoked, timeout=90, interval=1)
    except AssertionError:
        raise AssertionError(hub.logs()) from None
    assert time.monotonic() - granted_at < 75  # bound: maxMinutes + reconcile_interval + slack
    # ... and carla's access ends.
    assert reaches("carla") == 403

    events = share_events(store)
    kinds = [(kind, data["recipient"]) for kind, data in events]
    assert kinds == [
        ("share-granted", "carla"),
        ("share-refused", "bob"),
        ("share-granted", "dora"),
        ("share-revoked", "dora"),
        ("share-revoked", "carla"),
    ], events
    assert events[0][1]["actor"] == "ana"
    assert events[0][1]["region"] == "eu"
    assert events[1][1]["reason_code"] == "region_not_entitled"
    assert "region 'eu'" in events[1][1]["reason"]
    assert events[3][1]["actor"] == "system"
    assert events[3][1]["reason_code"] == "recipient_not_allowed"
    assert events[4][1]["actor"] == "system"
    assert events[4][1]["reason_code"] == "expired"


async def test_a_share_code_is_capped_and_checked_when_it_is_accepted(
    kube, start_hub, policy_copy, tmp_path, monkeypatch
):
    hub, store, ana = ana_sharing(start_hub, policy_copy, tmp_path, monkeypatch, us=("bob",))

    too_long = as_user(hub, ana, "POST", "/hub/api/share-codes/ana/", json={"expires_in": 86400})
    assert too_long.status_code == 403
    assert "28800 seconds" in too_long.json()["message"]  # the policy's 480 minutes
    # JupyterHub coerces a numeric string or a float: the cap sees the number it will use.
    for sneaky in ("31536000", 31536000.0):
        coerced = as_user(hub, ana, "POST", "/hub/api/share-codes/ana/",
                          json={"expires_in": sneaky})  # fmt: skip
        assert coerced.status_code == 403, coerced.text
    garbage = as_user(hub, ana, "POST", "/hub/api/share-codes/ana/", json={"expires_in": "x"})
    assert garbage.status_code == 400
    made = as_user(hub, ana, "POST", "/hub/api/share-codes/ana/", json={})
    assert made.status_code == 200, made.text
    code = made.json()["code"]
    created = datetime.fromisoformat(made.json()["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(made.json()["expires_at"].replace("Z", "+00:00"))
    assert timedelta(hours=7, minutes=59) < expires - created <= timedelta(hours=8)

    def accept(user: str) -> requests.Response:
        # As in a browser: the accept-share page, then its form (with the xsrf token).
        session = login(hub, user)
        page = session.get(f"{hub.url}/hub/accept-share", params={"code": code}, timeout=30)
        assert page.status_code == 200, page.text
        return session.post(
            f"{hub.url}/hub/accept-share",
            data={"code": code, "_xsrf": session.cookies.get("_xsrf", path="/hub/")},
            allow_redirects=False,
            timeout=30,
        )

    refused = accept("bob")
    assert refused.status_code == 403
    assert "not entitled to region &#39;eu&#39;" in refused.text  # HTML-escaped on the page
    accepted = accept("carla")
    assert accepted.status_code == 302, accepted.text
    listed = hub.api("GET", "/shares/ana/").json()["items"]
    assert [s["user"]["name"] for s in listed] == ["carla"]
    # A PATCH that takes away a scope the share does not hold leaves it: nothing is revoked.
    # One that takes away all it holds removes it: revoked, once.
    scopes = listed[0]["scopes"]
    kept = as_user(hub, ana, "PATCH", "/hub/api/shares/ana/",
                   json={"user": "carla", "scopes": ["read:users:name!user=nobody"]})  # fmt: skip
    assert kept.status_code == 200, kept.text
    assert hub.api("GET", "/shares/ana/").json()["items"]
    gone = as_user(hub, ana, "PATCH", "/hub/api/shares/ana/",
                   json={"user": "carla", "scopes": scopes})  # fmt: skip
    assert gone.status_code in (200, 204), gone.text
    assert hub.api("GET", "/shares/ana/").json()["items"] == []

    kinds = [
        (kind, data["recipient_kind"], data["recipient"])
        for kind, data in share_events(store, at_least=7)
    ]
    assert kinds == [
        ("share-refused", "code", ""),
        ("share-refused", "code", ""),  # "31536000"
        ("share-refused", "code", ""),  # 31536000.0
        ("share-granted", "code", ""),
        ("share-refused", "user", "bob"),
        ("share-granted", "user", "carla"),
        ("share-revoked", "user", "carla"),
    ]


GRANTS_UNRECORDED = """
import os
from sovereign_hub.reporting import AuditUnavailable, Reporter

class RefusesGrantsWhileFlagged(Reporter):
    # The audit trail failing closed, for grants only and only while the flag file exists.
    def __init__(self, inner):
        self.inner = inner
    def report(self, event):
        self.inner.report(event)
    def policy_seen(self, path, sha256):
        self.inner.policy_seen(path, sha256)
    def share(self, event):
        if event.kind in ("share_granted", "share_accessed") and os.path.exists({flag!r}):
            raise AuditUnavailable("store postgresql://writer:pw-s3cret@db.internal/audit is down")
        self.inner.share(event)

c.GovernedSharing.reporter = RefusesGrantsWhileFlagged(c.GovernedSharing.reporter)
"""


async def test_a_grant_the_audit_trail_cannot_record_is_not_made(
    kube, start_hub, policy_copy, tmp_path, monkeypatch
):
    """Grants (and entries through a share) are recorded first: when the trail refuses the record
    (as a trail failing closed does; simulated by a reporter that raises its
    AuditUnavailable while a flag file exists), the share, share code or exchange is
    rolled back and the request answered 503, so no access exists without its record."""
    flag = tmp_path / "refuse-grants"
    hub, store, ana = ana_sharing(start_hub, policy_copy, tmp_path, monkeypatch,
                                  extra=GRANTS_UNRECORDED.format(flag=str(flag)))  # fmt: skip

    flag.touch()
    refused = as_user(hub, ana, "POST", "/hub/api/shares/ana/", json={"user": "carla"})
    assert refused.status_code == 503, refused.text
    assert "audit trail" in refused.json()["message"]
    # The sink's error (its store's address and credentials) stays out of the answer; the
    # answer's reference finds the scrubbed detail in the hub's log.
    ref = re.search(r"\(ref ([0-9a-f]{12})\)", refused.json()["message"])
    assert ref, refused.json()["message"]
    assert "db.internal" not in refused.text
    assert f"[ref {ref[1]}]: store postgresql://writer:[secret]@db.internal" in hub.logs()
    assert "pw-s3cret" not in hub.logs()
    assert hub.api("GET", "/shares/ana/").json()["items"] == []
    carla_token = token_of(hub, "carla")
    assert as_user(hub, carla_token, "GET", "/user/ana/api/status").status_code == 403

    no_code = as_user(hub, ana, "POST", "/hub/api/share-codes/ana/", json={})
    assert no_code.status_code == 503, no_code.text
    assert hub.api("GET", "/share-codes/ana/").json()["items"] == []

    # A code made while the trail records; its exchange while it does not.
    flag.unlink()
    made = as_user(hub, ana, "POST", "/hub/api/share-codes/ana/", json={})
    assert made.status_code == 200, made.text
    flag.touch()
    session = login(hub, "carla")
    page = session.get(f"{hub.url}/hub/accept-share", params={"code": made.json()["code"]})
    assert page.status_code == 200, page.text
    accepted = session.post(
        f"{hub.url}/hub/accept-share",
        data={"code": made.json()["code"], "_xsrf": session.cookies.get("_xsrf", path="/hub/")},
        allow_redirects=False,
        timeout=30,
    )
    assert accepted.status_code == 503, accepted.text
    assert hub.api("GET", "/shares/ana/").json()["items"] == []

    # With the trail back, the same share is made, and recorded once.
    flag.unlink()
    granted = as_user(hub, ana, "POST", "/hub/api/shares/ana/", json={"user": "carla"})
    assert granted.status_code == 200, granted.text
    assert [s["user"]["name"] for s in hub.api("GET", "/shares/ana/").json()["items"]] == ["carla"]
    # Entering ana's server through the share is recorded first, too: unrecorded, refused.
    flag.touch()
    _, page = enter_server(hub, "carla", "ana")
    assert page.status_code == 503, (page.url, page.text[:300])
    assert "/hub/api/oauth2/authorize" in page.url
    assert "db.internal" not in page.text
    assert "(ref " in page.text
    flag.unlink()
    assert enter_server(hub, "carla", "ana")[1].status_code == 200

    kinds = [(kind, data["recipient_kind"]) for kind, data in share_events(store)]
    assert kinds == [
        ("share-granted", "code"),
        ("share-granted", "user"),
        ("share-accessed", "user"),
    ], kinds


async def test_a_recipient_leaving_and_an_admin_removing_a_group_share_are_recorded(
    kube, start_hub, policy_copy, tmp_path, monkeypatch
):
    """JupyterHub's per-user and per-group share endpoints (``/hub/api/users/{u}/shared/…``,
    ``/hub/api/groups/{g}/shared/…``) revoke as the owner's endpoint does, and are audited."""
    hub, store, ana = ana_sharing(start_hub, policy_copy, tmp_path, monkeypatch)
    for body in ({"user": "carla"}, {"group": "eu-researchers"}):
        granted = as_user(hub, ana, "POST", "/hub/api/shares/ana/", json=body)
        assert granted.status_code == 200, granted.text

    # Only carla (or an admin) may take carla's share away: JupyterHub's scope check holds.
    add_users(hub, "us-analysts", "bob")
    meddled = as_user(hub, token_of(hub, "bob"), "DELETE", "/hub/api/users/carla/shared/ana/")
    assert meddled.status_code in (403, 404), meddled.text
    assert len(hub.api("GET", "/shares/ana/").json()["items"]) == 2
    carla = token_of(hub, "carla")
    left = as_user(hub, carla, "DELETE", "/hub/api/users/carla/shared/ana/")
    assert left.status_code == 204, left.text
    # Nothing left to leave: JupyterHub's 404, and no record.
    again = as_user(hub, carla, "DELETE", "/hub/api/users/carla/shared/ana/")
    assert again.status_code == 404, again.text
    removed = hub.api("DELETE", "/groups/eu-researchers/shared/ana/")
    assert removed.status_code == 204, removed.text
    assert hub.api("GET", "/shares/ana/").json()["items"] == []

    revoked = [
        (data["actor"], data["recipient_kind"], data["recipient"], data["reason_code"])
        for kind, data in share_events(store)
        if kind == "share-revoked"
    ]
    assert revoked == [
        ("carla", "user", "carla", "revoked"),
        ("test-admin", "group", "eu-researchers", "revoked"),
    ], share_events(store)


async def test_entering_a_shared_server_is_recorded_once_per_login(
    kube, start_hub, policy_copy, tmp_path, monkeypatch
):
    """carla signs in to ana's server through her share (the hub's OAuth authorize, with
    its consent page, as a browser does): one share-accessed naming the share used; her
    further requests, and ana opening her own server, add none."""
    hub, store, ana = ana_sharing(start_hub, policy_copy, tmp_path, monkeypatch)
    shared = as_user(hub, ana, "POST", "/hub/api/shares/ana/", json={"user": "carla"})
    assert shared.status_code == 200, shared.text

    carla, page = enter_server(hub, "carla", "ana")
    assert page.status_code == 200, page.url
    assert page.url.startswith(f"{hub.url}/user/ana/"), page.url  # in ana's server
    for _ in range(3):
        assert carla.get(f"{hub.url}/user/ana/api/status", timeout=30).status_code == 200
    assert enter_server(hub, "ana", "ana")[1].status_code == 200

    accessed = [data for kind, data in share_events(store) if kind == "share-accessed"]
    assert accessed == [
        {
            "actor": "carla",
            "subject": "ana",
            "server": "",
            "region": "eu",
            "recipient_kind": "user",
            "recipient": "carla",
        }
    ], share_events(store)


async def test_a_group_share_lets_its_members_in(
    kube, start_hub, policy_copy, tmp_path, monkeypatch
):
    """ana shares with eu-researchers: carla, a member, opens ana's server through the proxy
    with a token and by signing in (JupyterHub 6.1 alone gives her a 403:
    :mod:`sovereign_hub.group_shares`); bob, not a member, does not. Sharing with
    us-analysts, a group not entitled to the server's region, is refused, so a member of
    a shared group is always entitled to its region through it."""
    hub, store, ana = ana_sharing(start_hub, policy_copy, tmp_path, monkeypatch, us=("bob",))
    assert as_user(hub, token_of(hub, "carla"), "GET", "/user/ana/api/status").status_code == 403
    shared = as_user(hub, ana, "POST", "/hub/api/shares/ana/", json={"group": "eu-researchers"})
    assert shared.status_code == 200, shared.text
    refused = as_user(hub, ana, "POST", "/hub/api/shares/ana/", json={"group": "us-analysts"})
    assert refused.status_code == 403, refused.text
    assert "region 'eu'" in refused.json()["message"]

    assert as_user(hub, token_of(hub, "carla"), "GET", "/user/ana/api/status").status_code == 200
    assert as_user(hub, token_of(hub, "bob"), "GET", "/user/ana/api/status").status_code == 403
    _, page = enter_server(hub, "carla", "ana")
    assert page.status_code == 200, (page.url, page.text[:300])
    assert page.url.startswith(f"{hub.url}/user/ana/"), page.url
    _, page = enter_server(hub, "bob", "ana")
    assert page.status_code == 403, (page.url, page.text[:300])

    accessed = [
        (data["actor"], data["recipient_kind"], data["recipient"])
        for kind, data in share_events(store, at_least=3)
        if kind == "share-accessed"
    ]
    assert accessed == [("carla", "group", "eu-researchers")], share_events(store)


async def test_an_expired_share_lets_no_one_in_before_any_reconcile(
    kube, start_hub, policy_copy, tmp_path, monkeypatch
):
    """With the periodic reconcile off, a share past the policy's maximum (1 minute) is ended
    where it is used: carla's sign-in (OAuth authorize) is refused and the share revoked and
    recorded once; her API token, sent straight to the server, is refused too."""
    policy_copy.write_text(policy_copy.read_text().replace("maxMinutes: 480", "maxMinutes: 1"))
    hub, store, ana = ana_sharing(start_hub, policy_copy, tmp_path, monkeypatch,
                                  eu=("ana", "carla", "dora"),
                                  extra="c.GovernedSharing.reconcile_interval = 0\n")  # fmt: skip
    for who in ("carla", "dora"):
        granted = as_user(hub, ana, "POST", "/hub/api/shares/ana/", json={"user": who})
        assert granted.status_code == 200, granted.text
    granted_at = time.monotonic()
    carla_token, dora_token = token_of(hub, "carla"), token_of(hub, "dora")
    assert enter_server(hub, "carla", "ana")[1].status_code == 200

    time.sleep(max(0.0, 62 - (time.monotonic() - granted_at)))
    # Nothing has revoked them yet: JupyterHub still lists both.
    assert len(hub.api("GET", "/shares/ana/").json()["items"]) == 2

    _, page = enter_server(hub, "carla", "ana")
    assert page.status_code == 403, (page.url, page.text[:300])
    assert "has ended" in page.text
    # A token made while the share held (the server has not seen it yet) is refused now.
    assert as_user(hub, dora_token, "GET", "/user/ana/api/status").status_code == 403
    assert as_user(hub, carla_token, "GET", "/user/ana/api/status").status_code == 403
    assert hub.api("GET", "/shares/ana/").json()["items"] == []

    kinds = [
        (kind, data["recipient"], data.get("reason_code"))
        for kind, data in share_events(store, at_least=6)
    ]
    assert kinds == [
        ("share-granted", "carla", None),
        ("share-granted", "dora", None),
        ("share-accessed", "carla", None),
        ("share-revoked", "carla", "expired"),
        ("share-revoked", "dora", "expired"),
    ], kinds


async def test_a_share_made_for_less_than_the_maximum_ends_then(
    kube, start_hub, policy_copy, tmp_path, monkeypatch
):
    """``expires_in`` on a grant (seconds, at most the policy's maximum) ends the share
    early: JupyterHub's listing says when, the record carries it, and the hub revokes it then.
    Longer than the maximum is refused with the limit, a non-number (NaN too) with a 400."""
    hub, store, ana = ana_sharing(start_hub, policy_copy, tmp_path, monkeypatch,
                                  eu=("ana", "carla", "dora"))  # fmt: skip
    too_long = as_user(hub, ana, "POST", "/hub/api/shares/ana/",
                       json={"user": "dora", "expires_in": 480 * 60 + 1})  # fmt: skip
    assert too_long.status_code == 403, too_long.text
    assert "28800 seconds" in too_long.json()["message"]
    # As JSON text: Python's json (the hub's) reads NaN and Infinity, which requests won't send.
    for bad in ('"x"', "59", "true", "NaN", "Infinity"):
        garbage = as_user(hub, ana, "POST", "/hub/api/shares/ana/",
                          data=f'{{"user": "dora", "expires_in": {bad}}}')  # fmt: skip
        assert garbage.status_code == 400, (bad, garbage.text)
    granted = as_user(hub, ana, "POST", "/hub/api/shares/ana/",
                      json={"user": "carla", "expires_in": 60})  # fmt: skip
    assert granted.status_code == 200, granted.text
    granted_at = time.monotonic()
    created = datetime.fromisoformat(granted.json()["created_at"].replace("Z", "+00:00"))
    ends = datetime.fromisoformat(granted.json()["expires_at"])
    assert timedelta(seconds=55) < ends - created < timedelta(seconds=70)
    (listed,) = hub.api("GET", "/shares/ana/").json()["items"]
    assert listed["expires_at"] == granted.json()["expires_at"]
    assert as_user(hub, token_of(hub, "carla"), "GET", "/user/ana/api/status").status_code == 200

    async def revoked():
        return hub.api("GET", "/shares/ana/").json()["items"] == []

    await eventually(revoked, timeout=120, interval=1)
    assert time.monotonic() - granted_at > 55
    assert as_user(hub, token_of(hub, "carla"), "GET", "/user/ana/api/status").status_code == 403

    events = share_events(store, at_least=3)
    assert [(k, d["recipient"], d.get("reason_code")) for k, d in events] == [
        ("share-refused", "dora", "too_long"),
        ("share-granted", "carla", None),
        ("share-revoked", "carla", "expired"),
    ], events
    assert events[1][1]["expires_at"] == granted.json()["expires_at"]
    assert events[2][1]["reason"] == "the end its owner chose came"
