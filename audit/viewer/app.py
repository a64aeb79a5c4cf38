"""The audit viewer: a JupyterHub service for security teams, at ``/services/audit/``.

Authenticated through the hub's OAuth; only tokens with ``custom:audit:read``
get in. Anyone else signed in gets a 403 page that says what is missing.
Every page and export is itself recorded as an ``audit-viewed`` event. Pages
are server-rendered Tornado templates, which escape every value, with no
JavaScript.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from .. import schemas
from ..sinks.readable import OUTCOMES
from ..store import StoreError
from ..trail import AuditTrail
from ..verify import verify
from .charts import bar_chart
from .overview import SERIES, overview
from .query import EVENTS, BadFilter, Query, Store
from .shares import active_shares

SCOPE = "custom:audit:read"
TEMPLATES = Path(__file__).with_name("templates")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A cell a spreadsheet will not evaluate (CSV formula injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def csv_row(r: dict[str, Any]) -> list[str]:
    """One exported record: time, event, actor, subject, region, digest, detail, id."""
    data = r["data"]
    return [
        csv_cell(v)
        for v in (r["time"], r["event"], data.get("actor"), data.get("subject"),
                  data.get("region"), data.get("digest"), summary(r), r["id"])
    ]  # fmt: skip


def summary(record: dict[str, Any]) -> str:
    data = record["data"]
    if data.get("reasons"):
        return "; ".join(str(r.get("message", "")) for r in data["reasons"])
    for key in ("reason", "detail"):
        if data.get(key):
            return str(data[key])
    if record["event"] == "api-action":
        return f"{data.get('method')} {data.get('route')} → {data.get('status')}"
    if data.get("digest"):
        return f"{data.get('profile', '')} {data['digest']}".strip()
    return ""


class Verification:
    """The last chain verification, run on demand off the event loop."""

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def run(self, store: Store, key: bytes) -> dict[str, Any]:
        async with self._lock:
            started = time.time()
            report = await asyncio.get_running_loop().run_in_executor(
                None, lambda: verify(store.backend.records(), key)
            )
            self.result = {
                "ok": report.ok,
                "records": report.records,
                "verified_through": report.verified_through,
                "findings": [(f.kind, f.hub, f.seq, f.message) for f in report.findings],
                "caveats": report.caveats,
                "notes": report.notes,
                "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
                "seconds": round(time.time() - started, 2),
            }
            return self.result


class ViewerHandler(HubOAuthenticated, web.RequestHandler):
    """Every page: the scope check, the clear refusal, and the ``audit-viewed`` record."""

    @property
    def hub_scopes(self) -> set[str]:
        return {SCOPE}

    def initialize(self, store: Store, trail: AuditTrail, key: bytes, check: Verification) -> None:
        self.store = store
        self.trail = trail
        self.key = key
        self.check = check

    def set_default_headers(self) -> None:
        self.set_header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
            "frame-ancestors 'none'",
        )
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")

    def get_template_path(self) -> str:
        return str(TEMPLATES)

    @property
    def actor(self) -> str:
        return str((self.current_user or {}).get("name", ""))

    def query(self) -> Query:
        try:
            return Query.parse({k: self.get_argument(k, "") for k in Query.__dataclass_fields__})
        except BadFilter as exc:
            raise web.HTTPError(400, reason="bad filter", log_message=str(exc)) from exc

    def record_view(self, view: str, query: Query | None = None, subject: str = "") -> None:
        filters = query.as_dict() if query else {}
        self.trail.emit(
            schemas.AUDIT_VIEWED,
            {
                "actor": self.actor,
                "subject": subject or (query.user if query else ""),
                "view": view,
                "filters": {k: v[:512] for k, v in filters.items()},
            },
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = ""
        error = kwargs.get("exc_info", (None, None))[1]
        if status_code == 403:
            message = (
                f"Reading the audit trail needs the {SCOPE} permission. Your administrator "
                "grants it to the security auditors' group; ask them if you need access."
            )
        elif isinstance(error, web.HTTPError) and error.log_message:
            message = error.log_message % error.args if error.args else error.log_message
        elif status_code == 503:
            message = "The audit store cannot be read right now. Try again shortly."
        self.render("error.html", status=status_code, message=message, base=self.base(), user="")

    def base(self) -> str:
        return str(self.settings["viewer_prefix"])

    def page(self, template: str, **values: Any) -> None:
        self.render(
            template, base=self.base(), user=self.actor, events=EVENTS,
            outcomes=list(OUTCOMES), summary=summary, url_encode=urlencode, **values,
        )  # fmt: skip


class OverviewHandler(ViewerHandler):
    """The first page: counts over time, by region and outcome, reasons, GPU hours, chain."""

    @web.authenticated
    def get(self) -> None:
        try:
            ov = overview(self.store, datetime.now(UTC))
        except StoreError as exc:
            raise web.HTTPError(503, log_message=str(exc)) from exc
        self.record_view("overview")
        timeline = self.base() + "timeline?"
        charts = {}
        for name, (_, filters) in SERIES.items():
            links = [
                timeline + urlencode({**filters, "since": day, "until": _next_day(day)})
                for day in ov.days
            ]
            everything = timeline + urlencode({**filters, "since": ov.days[0]})
            charts[name] = (
                bar_chart(name.capitalize(), ov.days, ov.series[name], links),
                ov.totals[name],
                everything,
            )
        self.page("overview.html", ov=ov, charts=charts, chain=self.check.result)


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


class TimelineHandler(ViewerHandler):
    @web.authenticated
    def get(self) -> None:
        query = self.query()
        after = self.get_argument("after", "")
        try:
            rows, more = self.store.page(query, after=after)
        except BadFilter as exc:
            raise web.HTTPError(400, log_message=str(exc)) from exc
        except StoreError as exc:
            raise web.HTTPError(503, log_message=str(exc)) from exc
        self.record_view("timeline", query)
        self.page("timeline.html", query=query, rows=rows, more=more, filters=query.as_dict())


class SessionHandler(ViewerHandler):
    @web.authenticated
    def get(self) -> None:
        user = self.get_argument("user", "").strip()[:256]
        sessions = []
        if user:
            try:
                sessions = self.store.sessions(user)
            except StoreError as exc:
                raise web.HTTPError(503, log_message=str(exc)) from exc
        self.record_view("session", None, subject=user)
        self.page("session.html", subject=user, sessions=sessions)


class AnomaliesHandler(ViewerHandler):
    @web.authenticated
    def get(self) -> None:
        try:
            groups = self.store.anomalies()
        except StoreError as exc:
            raise web.HTTPError(503, log_message=str(exc)) from exc
        self.record_view("anomalies")
        self.page("anomalies.html", groups=groups)


class SharesHandler(ViewerHandler):
    """Servers shared now: each grant the trail has not seen revoked, before its expiry."""

    @web.authenticated
    def get(self) -> None:
        try:
            shares = active_shares(self.store.share_events(), datetime.now(UTC))
        except StoreError as exc:
            raise web.HTTPError(503, log_message=str(exc)) from exc
        self.record_view("shares")
        self.page("shares.html", shares=shares)


class ChainHandler(ViewerHandler):
    @web.authenticated
    def get(self) -> None:
        self.record_view("chain")
        self.page("chain.html", result=self.check.result)

    @web.authenticated
    async def post(self) -> None:
        self.record_view("verify")
        try:
            await self.check.run(self.store, self.key)
        except StoreError as exc:
            raise web.HTTPError(503, log_message=str(exc)) from exc
        self.redirect(self.base() + "chain")


class ExportHandler(ViewerHandler):
    @web.authenticated
    def get(self, kind: str) -> None:
        query = self.query()
        self.record_view(f"export-{kind}", query)
        name = f"audit-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.{kind}"
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        rows = self.store.iterate(query)
        if kind == "jsonl":
            self.set_header("Content-Type", "application/x-ndjson")
            for record in rows:
                record.pop("event", None)
                self.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
            return
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        buffer = io.StringIO()
        out = csv.writer(buffer)
        out.writerow(["time", "event", "actor", "subject", "region", "digest", "detail", "id"])
        out.writerows(csv_row(r) for r in rows)
        self.write(buffer.getvalue())


def make_app(
    *,
    store: str,
    trail: AuditTrail,
    key: bytes,
    prefix: str,
    cookie_secret: bytes,
    password_file: str = "",
) -> web.Application:
    context = {
        "store": Store(store, password_file),
        "trail": trail,
        "key": key,
        "check": Verification(),
    }
    return web.Application(
        [
            (prefix, OverviewHandler, context),
            (prefix + "timeline", TimelineHandler, context),
            (prefix + "session", SessionHandler, context),
            (prefix + "anomalies", AnomaliesHandler, context),
            (prefix + "shares", SharesHandler, context),
            (prefix + "chain", ChainHandler, context),
            (prefix + r"export\.(csv|jsonl)", ExportHandler, context),
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
        ],
        cookie_secret=cookie_secret,
        xsrf_cookies=True,
        static_path=None,
        autoescape="xhtml_escape",
        viewer_prefix=prefix,
    )
