"""One simulated user: log in through the OIDC provider, spawn, wait until ready, call the
server's API through the proxy, idle, stop; what happened is a :class:`UserResult`."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import requests

from sovereign_hub.sandbox.oidc import login_via_provider

from .plan import LoadPlan, SimUser
from .retry import send_with_retry

Outcome = Literal["ready", "failed", "refused", "throttled", "timeout", "error", "logged-in"]
"""``logged-in``: a user who only logs in (not one of the plan's spawners) did so."""


@dataclass(slots=True)
class UserResult:
    name: str
    profile: str
    region: str
    outcome: Outcome = "error"
    detail: str = ""
    login_seconds: float = 0.0
    ready_seconds: float | None = None
    """From the spawn request to the hub reporting the server ready."""
    status_code: int | None = None
    """What ``/user/<name>/api/status`` answered through the proxy."""
    started_at: float = 0.0
    login_retries: int = 0
    """Logins tried again: the hub answered 503 (the identity provider did not answer in
    time), or the provider's own sign-in page failed (500)."""
    throttled: int = 0
    """429 answers to the spawn request that were waited out and asked again."""
    throttled_seconds: float = 0.0
    """Time spent waiting as those answers' ``Retry-After`` asked (not in ``ready_seconds``)."""
    spawns: bool = True
    """Whether this user was one to ask for a server (see ``LoadPlan.spawners``)."""
    logged_in: bool = False
    """The login through the provider succeeded and the user holds an API token."""
    asked_at: float | None = None
    """When the spawn request the hub accepted was sent, seconds after the run began."""
    answered_late: bool = False
    """The hub did not answer the spawn request within ``LoadPlan.answer_seconds``: the
    simulated browser gave up on it (as an ingress's 60 s read timeout would, showing the
    person a 504) and followed the server from the user's model instead, as the person
    reloading the hub's page would; with no server there after another wait as long, it
    asked again, as the person clicking Start again would."""


class Arrivals:
    """A countdown of the users still to log in: spawning users wait until it reaches zero
    (everyone, spawning or not, has logged in or failed to), the others only count down."""

    def __init__(self, users: int) -> None:
        self._left = users
        self._lock = threading.Lock()
        self._all_in = threading.Event()
        if users <= 0:
            self._all_in.set()

    def arrived(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left <= 0:
                self._all_in.set()

    def wait(self, timeout: float) -> bool:
        return self._all_in.wait(timeout)


def simulate(
    hub_url: str,
    user: SimUser,
    plan: LoadPlan,
    t0: float,
    arrivals: Arrivals | None = None,
) -> UserResult:
    """One user's visit. With ``arrivals``, a spawning user logs in, then waits until every
    user has (or the deadline passed) before asking for a server, so the spawns come
    together. A user who does not spawn logs in and leaves its session open."""
    result = UserResult(user.name, user.choice.profile, user.choice.region, spawns=user.spawns)
    time.sleep(max(0.0, t0 + user.arrives - time.monotonic()))
    result.started_at = time.monotonic() - t0
    rng = random.Random(f"{plan.seed}:{user.name}")  # noqa: S311 (jitter, not a secret)
    auth = None
    try:
        auth = _log_in(hub_url, user, plan, result, rng)
    except requests.RequestException as exc:
        result.outcome, result.detail = "error", f"{type(exc).__name__}: {exc}"
    finally:
        if arrivals is not None:
            # A user whose login failed still arrives, or the others would wait for it.
            arrivals.arrived()
            if user.spawns:
                arrivals.wait(timeout=max(0.0, t0 + plan.deadline_seconds - time.monotonic()))
    if auth is None:
        return result
    result.logged_in = True
    if not user.spawns:
        result.outcome = "logged-in"
        return result
    try:
        _spawn_and_stop(hub_url, user, plan, result, rng, auth, t0)
    except requests.RequestException as exc:
        result.outcome, result.detail = "error", f"{type(exc).__name__}: {exc}"
    return result


def _log_in(
    hub_url: str, user: SimUser, plan: LoadPlan, result: UserResult, rng: random.Random
) -> dict[str, str] | None:
    """Log in through the provider and make an API token; its header, or None (see result)."""
    began = time.monotonic()
    browser = requests.Session()

    def log_in() -> requests.Response:
        nonlocal browser
        browser, landed = login_via_provider(hub_url, user.name)
        return landed

    # The hub answers 503 "try again in a minute" when the identity provider did not
    # answer the login in time; a person tries again, and so does a simulated user.
    # It sends no Retry-After: start at 15 s, not the 429 fallback's 1 s, or the retries of a
    # burst hammer the slow provider again at once (seen at 1,000 users: 2,438 503s).
    policy = dataclasses.replace(plan.retry, fallback_seconds=15.0, jitter=0.5)
    # The test provider's own sign-in page failing (provider_failed) is signed in again too.
    landed, waits = send_with_retry(
        log_in,
        policy,
        rng=rng,
        retry_on=(503,),
        retry_if=lambda r: provider_failed(r, hub_url),
    )
    result.login_retries = len(waits)
    result.login_seconds = time.monotonic() - began
    if landed.status_code != 200:
        result.outcome, result.detail = "error", f"login answered {landed.status_code}"
        return None
    api = f"{hub_url}/hub/api"
    # A token for the scripted part, made with the browser's session (JupyterHub
    # wants the XSRF cookie's value back in a header for that).
    browser.get(f"{hub_url}/hub/home", timeout=30)
    xsrf = {"X-XSRFToken": browser.cookies.get("_xsrf", "")}
    made = browser.post(f"{api}/users/{user.name}/tokens", json={}, headers=xsrf, timeout=30)
    made.raise_for_status()
    return {"Authorization": f"token {made.json()['token']}"}


def provider_failed(response: requests.Response, hub_url: str) -> bool:
    """Whether a login ended on a 500 of the identity provider's own pages (another address
    than the hub's): the test provider (oidc-provider-mock) answers its sign-in form 500
    under concurrent logins (a race in its recent-users list, seen at 100 at once), and a
    person signs in again. The hub's own 500 is a failure, not retried."""
    return response.status_code == 500 and urlsplit(response.url).netloc != urlsplit(hub_url).netloc


def _spawn_and_stop(
    hub_url: str,
    user: SimUser,
    plan: LoadPlan,
    result: UserResult,
    rng: random.Random,
    auth: dict[str, str],
    t0: float,
) -> None:
    api = f"{hub_url}/hub/api"
    options = {"profile": user.choice.profile, "region": user.choice.region}
    attempted = time.monotonic()

    def ask() -> requests.Response:
        nonlocal attempted
        attempted = time.monotonic()
        return requests.post(
            f"{api}/users/{user.name}/server",
            json=options,
            headers=auth,
            timeout=(30, plan.answer_seconds),
        )

    waits: list[float] = []

    def ask_with_retry() -> requests.Response | None:
        """The hub's answer (429s waited out), or None if it did not answer in time."""
        try:
            return send_with_retry(ask, plan.retry, rng=rng, waits=waits)[0]
        except requests.ReadTimeout:
            return None

    spawned = ask_with_retry()
    if spawned is None:
        # The hub took the request but did not answer in time (a person sees the ingress's
        # 504 and reloads). JupyterHub goes on with a spawn whose client left, so the server
        # shows up pending or ready; if nothing does, the late answer was a refusal (429,
        # 403) or the request was lost, and the person clicks Start again.
        result.answered_late = True
        if not _shows_up(api, user.name, auth, plan.answer_seconds):
            spawned = ask_with_retry()
    result.throttled, result.throttled_seconds = len(waits), sum(waits)
    asked = attempted  # time to ready counts from the last request, the one that counted
    result.asked_at = asked - t0
    if spawned is not None:
        if spawned.status_code == 429:
            result.outcome = "throttled"
            result.detail = f"429 after {len(waits) + 1} attempts: {_message(spawned)}"
            return
        if spawned.status_code == 403:
            result.outcome, result.detail = "refused", _message(spawned)
            return
        # Asked again after a late answer: the first request's spawn may have finished.
        running = result.answered_late and "already running" in _message(spawned)
        if spawned.status_code not in (201, 202) and not running:
            result.outcome, result.detail = "failed", f"{spawned.status_code}: {_message(spawned)}"
            return
    result.outcome, result.detail = _wait_ready(api, user.name, auth, plan.ready_timeout)
    if result.outcome != "ready":
        return
    result.ready_seconds = time.monotonic() - asked
    _use_and_stop(hub_url, user.name, plan, result, auth)


def _use_and_stop(
    hub_url: str, name: str, plan: LoadPlan, result: UserResult, auth: dict[str, str]
) -> None:
    """Call the ready server's API through the proxy, idle, stop it and wait until stopped."""
    api = f"{hub_url}/hub/api"
    status = requests.get(f"{hub_url}/user/{name}/api/status", headers=auth, timeout=30)
    result.status_code = status.status_code
    if status.status_code != 200:
        result.outcome, result.detail = "failed", f"api/status answered {status.status_code}"
    time.sleep(plan.idle_seconds)
    stopped = requests.delete(f"{api}/users/{name}/server", headers=auth, timeout=60)
    if stopped.status_code not in (202, 204):
        result.outcome, result.detail = "failed", f"stop answered {stopped.status_code}"
        return
    _wait_stopped(api, name, auth, plan.ready_timeout)


def _shows_up(api: str, name: str, auth: dict[str, str], within: float) -> bool:
    """Whether the user's server shows up pending or ready in the hub's model within
    ``within`` seconds (the hub may still be working through an unanswered request)."""
    deadline = time.monotonic() + within
    pause = 1.0
    while True:
        with contextlib.suppress(requests.RequestException, ValueError):
            model = requests.get(f"{api}/users/{name}", headers=auth, timeout=30).json()
            if model.get("pending") or (model.get("servers") or {}).get(""):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(5.0, pause * 2)


def _wait_ready(api: str, name: str, auth: dict[str, str], timeout: float) -> tuple[Outcome, str]:
    """Follow the spawn's progress stream, as the spawn page does: one long request per spawn.

    Polling the user model every half second was the hub's largest CPU cost with 300
    spawns at once (37% of its samples in a py-spy profile were those requests), so the
    load measured the poll more than the spawns.
    """
    deadline = time.monotonic() + timeout
    pause = 0.5
    while time.monotonic() < deadline:
        event = _follow_progress(api, name, auth, deadline)
        if event.get("ready"):
            return "ready", ""
        if event.get("failed"):
            return "failed", str(event.get("message", ""))
        # No verdict (the stream dropped, or the spawn was not pending yet): ask the model.
        model = requests.get(f"{api}/users/{name}", headers=auth, timeout=30).json()
        server = (model.get("servers") or {}).get("")
        if server and server.get("ready"):
            return "ready", ""
        if not server and not model.get("pending"):
            # The spawn ended without a server: the hub kept why in the progress stream.
            return "failed", _last_progress(api, name, auth)
        time.sleep(pause)
        pause = min(5.0, pause * 2)
    return "timeout", f"not ready after {timeout:g} s"


def _follow_progress(
    api: str, name: str, auth: dict[str, str], deadline: float
) -> dict[str, object]:
    """The progress stream's verdict event (ready or failed), or {} if it ended without one."""
    wait = max(1.0, deadline - time.monotonic())
    with (
        contextlib.suppress(requests.RequestException, ValueError),
        requests.get(
            f"{api}/users/{name}/server/progress",
            headers=auth,
            stream=True,
            timeout=(30, min(wait, 60)),  # the hub sends a keepalive between events
        ) as r,
    ):
        if r.status_code != 200:
            return {}
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                event = json.loads(line[5:])
                if event.get("ready") or event.get("failed"):
                    return dict(event)
    return {}


def _wait_stopped(api: str, name: str, auth: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pause = 0.5
    while time.monotonic() < deadline:
        model = requests.get(f"{api}/users/{name}", headers=auth, timeout=30).json()
        if not model.get("servers") and not model.get("pending"):
            return
        time.sleep(pause)
        pause = min(5.0, pause * 2)


def _last_progress(api: str, name: str, auth: dict[str, str]) -> str:
    with (
        contextlib.suppress(requests.RequestException),
        requests.get(
            f"{api}/users/{name}/server/progress", headers=auth, stream=True, timeout=10
        ) as r,
    ):
        last = ""
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                last = json.loads(line[5:]).get("message", "")
        return last
    return "the spawn ended without a server"


def _message(response: requests.Response) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return response.text[:200]
