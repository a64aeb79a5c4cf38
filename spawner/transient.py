"""Riding out a Kubernetes API server that is briefly away (a restart, a rolling upgrade).

KubeSpawner retries its own requests only on timeouts; a restarting API server
refuses connections or drops them instead. The calls the Sovereign spawner
makes itself (the home claim, the stop that must not leave a pod behind) are
retried here with exponential backoff for a bounded time, and a spawn that
fails on such an error says so in words a user can act on, not as a socket error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from sovereign_hub.refusals import SpawnRefused

log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
"""Answers a real API server gives while it is overloaded, starting or behind a restarting
load balancer: the request may succeed when repeated."""


class ApiUnavailable(RuntimeError):
    """The Kubernetes API server could not be reached for as long as the spawner waits."""


def is_transient(exc: BaseException) -> bool:
    """True for an error that repeating the same request may cure."""
    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUS
    return isinstance(exc, aiohttp.ClientConnectionError | ConnectionError | TimeoutError)


def unavailable(what: str, exc: BaseException) -> ApiUnavailable:
    cause = type(exc).__name__ if not isinstance(exc, ApiException) else f"HTTP {exc.status}"
    return ApiUnavailable(
        f"The cluster's API server did not answer while {what} ({cause}). "
        "Nothing was started; please try again in a minute."
    )


def clear_failure(exc: BaseException, what: str) -> BaseException:
    """``exc`` as the user should read it: a transient API error becomes
    :class:`ApiUnavailable`; anything else is returned as it is."""
    return unavailable(what, exc) if is_transient(exc) else exc


async def retry_transient(
    call: Callable[[], Awaitable[T]], *, what: str, timeout: float, first_delay: float = 0.2
) -> T:
    """``await call()``, repeated after transient errors (doubling waits, at most 5 s) until
    ``timeout`` seconds have passed; then :class:`ApiUnavailable` naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = first_delay
    while True:
        try:
            return await call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if loop.time() + delay > deadline:
                raise unavailable(what, exc) from exc
            log.warning("%s: %s; retrying in %.1f s", what, type(exc).__name__, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


def _failed_to_load(reflector: Any) -> BaseException | None:
    loaded = reflector.first_load_future
    if loaded.done() and not loaded.cancelled():
        return loaded.exception()  # type: ignore[no-any-return]
    return None


def _refused(start: asyncio.Future[Any] | None) -> bool:
    if start is None or not start.done() or start.cancelled():
        return False
    return isinstance(start.exception(), SpawnRefused)


class ApiRetries:
    """KubeSpawner mixin: the pod reflector's start and ``stop`` retried through transient
    API errors for ``k8s_api_request_retry_timeout`` seconds.

    - A stop that gave up while the API server was away would leave the pod (and its
      GPUs) running for a server the hub forgets.
    - KubeSpawner keeps a pod reflector whose initial list failed and hands it to every
      later spawn, which then waits its whole ``start_timeout`` for a pod that reflector
      never sees (KubeSpawner 7.x). A failed start is retried, replacing the dead reflector.
      This wraps KubeSpawner's ``_start_watching_pods`` (not a documented hook): there is
      no other way in, and the wrapper only calls it again with ``replace=True``.
    """

    k8s_api_request_retry_timeout: int

    async def _start_watching_pods(self, replace: bool = False) -> Any:
        parent = super()._start_watching_pods  # type: ignore[misc]
        replacing = replace

        async def attempt() -> Any:
            nonlocal replacing
            try:
                reflector = await parent(replace=replacing)
            finally:
                replacing = True  # a failed start leaves its reflector registered: replace it
            failure = _failed_to_load(reflector)
            if failure is not None:
                raise failure
            return reflector

        return await retry_transient(
            attempt,
            what="listing the cluster's pods",
            timeout=self.k8s_api_request_retry_timeout,
        )

    async def poll(self) -> int | None:
        if _refused(getattr(self, "_start_future", None)):
            # Nothing reached the cluster (see stop): no server, and no question to ask the API
            # server. JupyterHub polls before it stops a failed start, and KubeSpawner's poll
            # starts the pod reflector first: while the API server is away that waits
            # k8s_api_request_retry_timeout, and the refused spawn's handler answers 500.
            return 0
        return await super().poll()  # type: ignore[misc, no-any-return]

    async def stop(self, now: bool = False) -> None:
        parent = super().stop  # type: ignore[misc]
        if _refused(getattr(self, "_start_future", None)):
            # The last start was refused before anything reached the cluster: there is no pod
            # to delete. KubeSpawner's stop would still wait on the API server (it starts the
            # pod reflector first), and a stop that outlasts slow_spawn_timeout after a failed
            # start makes JupyterHub 6.1's spawn handler answer 500 (it asks a pending future
            # for its exception).
            return
        await retry_transient(
            lambda: parent(now=now),
            what="stopping the server",
            timeout=self.k8s_api_request_retry_timeout,
        )
