"""Riding out a briefly absent API server: which errors are retried, for how long, and
what the user reads when waiting did not help (spawner/transient.py)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from sovereign_hub.spawner.transient import (
    ApiRetries,
    ApiUnavailable,
    clear_failure,
    is_transient,
    retry_transient,
)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (aiohttp.ServerDisconnectedError(), True),
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (ApiException(status=503), True),
        (ApiException(status=429), True),
        (ApiException(status=403), False),
        (ApiException(status=422), False),
        (ValueError("bad"), False),
    ],
)
def test_only_errors_a_repeat_may_cure_are_transient(exc, transient):
    assert is_transient(exc) is transient


async def test_a_call_is_repeated_until_the_api_server_answers():
    calls = []

    async def call() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError
        return "done"

    assert await retry_transient(call, what="x", timeout=5, first_delay=0.01) == "done"
    assert len(calls) == 3


async def test_waiting_gives_up_with_a_message_naming_what_and_why():
    async def call() -> None:
        raise ApiException(status=503)

    with pytest.raises(ApiUnavailable) as caught:
        await retry_transient(
            call, what="creating the home volume h", timeout=0.1, first_delay=0.02
        )
    message = str(caught.value)
    assert "creating the home volume h" in message
    assert "HTTP 503" in message
    assert "try again" in message


async def test_a_refusal_is_not_retried():
    calls = []

    async def call() -> None:
        calls.append(1)
        raise ApiException(status=403)

    with pytest.raises(ApiException):
        await retry_transient(call, what="x", timeout=5, first_delay=0.01)
    assert len(calls) == 1


def test_a_socket_error_is_reworded_and_anything_else_kept():
    reworded = clear_failure(aiohttp.ClientConnectionError("Cannot connect to host"), "starting")
    assert isinstance(reworded, ApiUnavailable)
    assert "Cannot connect" not in str(reworded)
    kept = ValueError("the image is not pinned")
    assert clear_failure(kept, "starting") is kept


class _Reflector:
    def __init__(self, failure: BaseException | None) -> None:
        self.first_load_future = asyncio.get_running_loop().create_future()
        if failure is None:
            self.first_load_future.set_result(None)
        else:
            self.first_load_future.set_exception(failure)
            self.first_load_future.exception()  # retrieved: no "never retrieved" warning


class _KubeSpawner:
    """KubeSpawner 7's behaviour that matters: a reflector whose initial list failed stays
    registered and is handed out again unless ``replace=True``."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.registered: _Reflector | None = None
        self.calls: list[bool] = []

    async def _start_watching_pods(self, replace: bool = False) -> _Reflector:
        self.calls.append(replace)
        if self.registered is not None and not replace:
            return self.registered
        failed = self.failures > 0
        self.failures -= 1
        self.registered = _Reflector(aiohttp.ClientConnectionError() if failed else None)
        return self.registered


class _Spawner(ApiRetries, _KubeSpawner):
    k8s_api_request_retry_timeout = 5


async def test_a_pod_reflector_whose_first_list_failed_is_replaced_not_reused():
    spawner = _Spawner(failures=2)
    first = await spawner._start_watching_pods()
    assert first.first_load_future.exception() is None
    assert spawner.calls == [False, True, True]
    # Later spawns get the healthy reflector without replacing it.
    assert await _Spawner._start_watching_pods(spawner) is first


class _Stopping:
    def __init__(self) -> None:
        self.stops = 0
        self.polls = 0

    async def stop(self, now: bool = False) -> None:
        self.stops += 1
        if self.stops < 3:
            raise ConnectionRefusedError

    async def poll(self) -> int | None:
        # KubeSpawner's poll starts the pod reflector first: with the API server away, that
        # waits out k8s_api_request_retry_timeout.
        self.polls += 1
        return None


class _StoppingSpawner(ApiRetries, _Stopping):
    k8s_api_request_retry_timeout = 5


async def test_a_stop_is_retried_until_the_pod_can_be_deleted():
    spawner = _StoppingSpawner()
    await spawner.stop()
    assert spawner.stops == 3


async def test_the_stop_after_a_refusal_does_not_wait_for_the_cluster():
    """Nothing reached the cluster; waiting would only delay the refusal (and a stop that
    outlasts slow_spawn_timeout turns the hub's answer into a 500)."""
    from sovereign_hub.refusals import SpawnRefused

    spawner = _StoppingSpawner()
    spawner._start_future = asyncio.get_running_loop().create_future()
    spawner._start_future.set_exception(SpawnRefused(403, "no quota"))
    await spawner.stop()
    assert spawner.stops == 0


async def test_the_poll_after_a_refusal_says_stopped_without_asking_the_cluster():
    """JupyterHub polls a failed start before stopping it. Seen in the storm: with the API
    server away, that poll waited for the pod reflector past slow_spawn_timeout, and the
    quota refusal reached the client as a 500."""
    from sovereign_hub.refusals import SpawnRefused

    spawner = _StoppingSpawner()
    assert await spawner.poll() is None  # no start yet: KubeSpawner answers
    spawner._start_future = asyncio.get_running_loop().create_future()
    spawner._start_future.set_exception(SpawnRefused(403, "no quota"))
    assert await spawner.poll() == 0
    assert spawner.polls == 1
