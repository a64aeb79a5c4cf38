"""A spawn request answered late with a refusal: the simulated user, finding no server
after the wait, asks again as a person clicking Start again would, and the 429s it waited
out are counted even when a later attempt went unanswered.

Against a stand-in for the hub's REST API (Tornado, on 127.0.0.1, in a thread): a real
hub cannot be made to answer a 429 after a given delay. The path through a real hub
(late answer, server followed to ready) is in ``tests/test_loadtest.py``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import pytest
from tornado import web

from sovereign_hub.policy import load_policy
from sovereign_hub.sandbox.loadtest import LoadPlan, population
from sovereign_hub.sandbox.loadtest.retry import RetryPolicy
from sovereign_hub.sandbox.loadtest.user import UserResult, _spawn_and_stop
from tests.conftest import ROOT
from tests.threaded_tornado import serving

POLICY = load_policy(ROOT / "examples" / "policy.yaml").policy


class Server(web.RequestHandler):
    """POST: the n-th request gets ``state["answers"][n]`` = (delay, status); DELETE stops."""

    def initialize(self, state: dict) -> None:
        self.state = state

    async def post(self, name: str) -> None:
        delay, status = self.state["answers"][len(self.state["posts"])]
        self.state["posts"].append(time.monotonic())
        await asyncio.sleep(delay)
        if status in (201, 202):
            self.state["running"] = True
        self.set_status(status)
        if status == 429:
            self.set_header("Retry-After", "0")
        self.finish({"message": f"answered {status}"})

    def delete(self, name: str) -> None:
        self.state["running"] = False
        self.set_status(204)


class Model(web.RequestHandler):
    def initialize(self, state: dict) -> None:
        self.state = state

    def get(self, name: str) -> None:
        servers = {"": {"ready": True}} if self.state["running"] else {}
        self.finish({"name": name, "pending": None, "servers": servers})


class Progress(web.RequestHandler):
    def get(self, name: str) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.finish('data: {"ready": true, "message": "ready"}\n\n')


class Status(web.RequestHandler):
    def get(self, name: str) -> None:
        self.finish({"started": True})


@pytest.fixture
def hub() -> Iterator[tuple[str, dict]]:
    state: dict = {"posts": [], "running": False, "answers": []}
    handlers = [
        (r"/hub/api/users/([^/]+)/server/progress", Progress),
        (r"/hub/api/users/([^/]+)/server", Server, {"state": state}),
        (r"/hub/api/users/([^/]+)", Model, {"state": state}),
        (r"/user/([^/]+)/api/status", Status),
    ]
    with serving(handlers) as url:
        yield url, state


def visit(url: str, plan: LoadPlan) -> UserResult:
    user = population(plan, POLICY)[0]
    result = UserResult(user.name, user.choice.profile, user.choice.region)
    auth = {"Authorization": "token t"}
    rng = random.Random(0)  # noqa: S311 (the retry's jitter, not a secret)
    _spawn_and_stop(url, user, plan, result, rng, auth, time.monotonic())
    return result


def test_a_late_429_then_no_server_is_asked_again_and_its_wait_counted(hub):
    url, state = hub
    # A 429 waited out, then an answer later than the browser waits (a 429 again, which
    # leaves no server), then the person's second click is answered at once.
    state["answers"] = [(0, 429), (1.5, 429), (0, 201)]
    plan = LoadPlan(users=1, answer_seconds=0.5, idle_seconds=0, retry=RetryPolicy(jitter=0))
    result = visit(url, plan)
    assert (result.outcome, result.answered_late) == ("ready", True), result
    assert len(state["posts"]) == 3
    # The 429 waited out before the unanswered attempt is kept; the late one was never read.
    assert result.throttled == 1
    assert result.status_code == 200
    assert state["running"] is False  # stopped at the end


def test_a_late_answer_whose_server_shows_up_is_not_asked_again(hub):
    url, state = hub
    # The spawn goes on after the browser gave up; the model then shows the server.
    state["answers"] = [(1.5, 202)]
    plan = LoadPlan(users=1, answer_seconds=0.5, idle_seconds=0)
    result = visit(url, plan)
    assert (result.outcome, result.answered_late) == ("ready", True), result
    assert len(state["posts"]) == 1
    assert result.ready_seconds is not None
    assert result.ready_seconds >= 1.5
