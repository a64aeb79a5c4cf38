"""The load generator's answer to a 429: wait as ``Retry-After`` asks (bounded, jittered), ask
again a bounded number of times, and count it apart from failures.

Against a real HTTP server (Tornado, on 127.0.0.1, in a thread) that answers
429 as JupyterHub does when ``concurrent_spawn_limit`` spawns are pending.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest
import requests
from tornado import web

from sovereign_hub.sandbox.loadtest import LoadPlan, Report, UserResult
from sovereign_hub.sandbox.loadtest.retry import RetryPolicy, retry_after, send_with_retry, wait_for
from tests.threaded_tornado import serving


class Throttling(web.RequestHandler):
    """429 with the configured ``Retry-After`` for the first ``refusals`` requests, then 201."""

    def initialize(self, state: dict) -> None:
        self.state = state

    def post(self) -> None:
        self.state["times"].append(time.monotonic())
        if len(self.state["times"]) <= self.state["refusals"]:
            self.set_status(self.state["status"])
            if self.state["retry_after"] is not None:
                self.set_header("Retry-After", self.state["retry_after"])
            self.finish({"message": "Too many users trying to log in right now."})
            return
        self.set_status(201)
        self.finish({})


@pytest.fixture
def server() -> Iterator[tuple[str, dict]]:
    state: dict = {"times": [], "refusals": 0, "retry_after": "1", "status": 429}
    with serving([(r"/spawn", Throttling, {"state": state})]) as url:
        yield f"{url}/spawn", state


def post(url: str) -> requests.Response:
    return requests.post(url, json={}, timeout=10)


def test_a_429_is_waited_out_as_retry_after_asks_then_asked_again(server):
    url, state = server
    state["refusals"], state["retry_after"] = 2, "1"
    policy = RetryPolicy(attempts=5, cap_seconds=30, jitter=0.25)
    rng = random.Random(1)  # noqa: S311 (jitter, not a secret)
    response, waits = send_with_retry(lambda: post(url), policy, rng=rng)
    assert response.status_code == 201
    assert len(waits) == 2
    # At least the asked second, at most the asked second plus the jitter.
    assert all(1.0 <= w <= 1.25 for w in waits), waits
    gaps = [b - a for a, b in zip(state["times"], state["times"][1:], strict=False)]
    assert len(gaps) == 2
    assert all(g >= 1.0 for g in gaps), gaps


def test_the_retries_are_bounded_in_count_and_in_wait(server):
    """A hub asking for an hour gets the cap; after the last attempt the 429 is the answer."""
    url, state = server
    state["refusals"], state["retry_after"] = 100, "3600"
    policy = RetryPolicy(attempts=3, cap_seconds=0.2, jitter=0.5)
    began = time.monotonic()
    rng = random.Random(2)  # noqa: S311 (jitter, not a secret)
    response, waits = send_with_retry(lambda: post(url), policy, rng=rng)
    assert response.status_code == 429
    assert len(state["times"]) == 3
    assert len(waits) == 2
    assert all(0.2 <= w <= 0.3 for w in waits), waits
    assert time.monotonic() - began < 30


def test_without_retry_after_the_wait_doubles_from_the_fallback(server):
    url, state = server
    state["refusals"], state["retry_after"] = 3, None
    policy = RetryPolicy(attempts=4, fallback_seconds=0.1, jitter=0.0)
    response, waits = send_with_retry(lambda: post(url), policy)
    assert response.status_code == 201
    assert waits == pytest.approx([0.1, 0.2, 0.4])


def test_a_login_answered_503_is_tried_again_and_a_429_is_not_mistaken_for_it(server):
    """The hub answers a login 503 when the identity provider was too slow ("try again")."""
    url, state = server
    state["refusals"], state["retry_after"], state["status"] = 2, None, 503
    policy = RetryPolicy(attempts=4, fallback_seconds=0.05, jitter=0.0)
    response, waits = send_with_retry(lambda: post(url), policy, retry_on=(503,))
    assert response.status_code == 201
    assert waits == pytest.approx([0.05, 0.1])
    state["times"], state["status"] = [], 429
    response, waits = send_with_retry(lambda: post(url), policy, retry_on=(503,))
    assert response.status_code == 429
    assert waits == []


def test_a_provider_500_is_tried_again_and_the_hubs_own_500_is_not(server):
    """The login's predicate: a 500 from the identity provider's sign-in page (another
    address than the hub's) is a person signing in again; the hub's own 500 is a failure.
    Here the test server plays the provider (first) and then the hub (second)."""
    from sovereign_hub.sandbox.loadtest.user import provider_failed

    url, state = server
    state["refusals"], state["retry_after"], state["status"] = 1, None, 500
    policy = RetryPolicy(attempts=3, fallback_seconds=0.05, jitter=0.0)
    hub = "http://127.0.0.1:1"  # another port: the 500 came from elsewhere
    response, waits = send_with_retry(
        lambda: post(url), policy, retry_if=lambda r: provider_failed(r, hub)
    )
    assert (response.status_code, waits) == (201, pytest.approx([0.05]))
    state["times"] = []
    hub = url.rsplit("/", 1)[0]  # the same address: the hub's own 500
    response, waits = send_with_retry(
        lambda: post(url), policy, retry_if=lambda r: provider_failed(r, hub)
    )
    assert (response.status_code, waits) == (500, [])
    # A port that merely starts like the hub's is another address.
    answered = requests.Response()
    answered.status_code, answered.url = 500, "http://127.0.0.1:12345/oauth2/authorize"
    assert provider_failed(answered, "http://127.0.0.1:1234")


def test_the_jitter_spreads_clients_that_were_told_the_same_wait():
    throttled = requests.Response()
    throttled.status_code, throttled.headers["Retry-After"] = 429, "4"
    policy = RetryPolicy(cap_seconds=10, jitter=0.5)
    rngs = [random.Random(seed) for seed in range(20)]  # noqa: S311 (jitter, not a secret)
    waits = {wait_for(throttled, 0, policy, rng) for rng in rngs}
    assert len(waits) > 10
    assert all(4.0 <= w <= 6.0 for w in waits)


def test_retry_after_as_an_http_date_and_unreadable_values():
    def answered(value: str) -> requests.Response:
        response = requests.Response()
        response.status_code, response.headers["Retry-After"] = 429, value
        return response

    now = time.time()
    assert retry_after(answered(formatdate(now + 20, usegmt=True)), now) == pytest.approx(20, abs=1)
    assert retry_after(answered(formatdate(now - 20, usegmt=True)), now) == 0
    assert retry_after(answered("soon")) is None
    assert retry_after(answered("45")) == 45


def test_a_bad_retry_policy_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="attempts must be at least 1, not 0"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="positive"):
        RetryPolicy(cap_seconds=0)


def test_the_report_counts_429s_apart_from_failures():
    results = [
        UserResult("a", "cpu-small", "eu", outcome="ready", ready_seconds=1.0, throttled=2),
        UserResult("b", "cpu-small", "eu", outcome="throttled", throttled=5),
        UserResult("c", "cpu-small", "eu", outcome="failed", detail="500"),
    ]
    table = Report(LoadPlan(users=3), results, 10.0).markdown()
    assert "| failed | 1 |" in table
    assert "| 429s waited out and retried | 7 |" in table
    assert "| gave up after repeated 429s | 1 |" in table
