"""Riding out a Kubernetes API server that is briefly away (a restart, a rolling upgrade).

KubeSpawner retries its own requests only on timeouts; a restarting API server
refuses connections or drops them instead. The calls the Sovereign spawner
makes itself (the home claim, the stop that must not leave a pod behind) are
retried here with exponential backoff for a bounded time, and a spawn that
fails on such an error says so in words a user can act on, not as a socket error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from sovereign_hub.refusals import SpawnRefused

log = logging.getLogger(__name__)
T = TypeVar("T")
SPAWN_ID = "sovereign-hub.io/spawn-id"
"""Pod annotation: one value per start, so a retried create can tell its own pod (a create
whose answer was lost) from a stale one of an earlier server."""
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
"""Answers a real API server gives while it is overloaded, starting or behind a restarting
load balancer: the request may succeed when repeated."""


QUEUED_AFTER = 1.0
"""Seconds an unanswered create's attempt may take beyond its answer timeout before it is
taken to have waited for one of the hub's connections to the API server."""


class ApiUnavailable(RuntimeError):
    """The Kubernetes API server could not be reached for as long as the spawner waits."""


def is_transient(exc: BaseException) -> bool:
    """True for an error that repeating the same request may cure."""
    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUS
    return isinstance(exc, aiohttp.ClientConnectionError | ConnectionError | TimeoutError)


def answer_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """A request's timeout as the API server's to meet: ``seconds`` to connect and then to
    answer, not counting the time the request waits for one of the client's pooled
    connections (kubernetes_asyncio's ``connection_pool_maxsize``, 100, shared by every
    spawn of the hub). The whole start stays bounded by ``start_timeout``."""
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=seconds, sock_read=seconds)


def unavailable(what: str, exc: BaseException) -> ApiUnavailable:
    cause = type(exc).__name__ if not isinstance(exc, ApiException) else f"HTTP {exc.status}"
    return ApiUnavailable(
        f"The cluster's API server did not answer while {what} ({cause}). "
        "Nothing was started; please try again in a minute."
    )


def server_address(api: Any) -> str:
    """The address of the API server ``api`` (a kubernetes_asyncio API) talks to, without
    any user information a URL may carry: ``https://10.0.0.1:6443``."""
    host = getattr(getattr(getattr(api, "api_client", None), "configuration", None), "host", "")
    url = urlsplit(host or "")
    if not url.hostname:
        return "(unknown address)"
    hostname = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{hostname}{port}"


def clear_failure(exc: BaseException, what: str, region: str | None = None) -> BaseException:
    """``exc`` as the user should read it: a transient API error becomes
    :class:`ApiUnavailable`, a request the API server refused a :class:`SpawnRefused`
    saying why; anything else is returned as it is."""
    if is_transient(exc):
        return unavailable(what, exc)
    if isinstance(exc, ApiException) and exc.status is not None and 400 <= exc.status < 500:
        return cluster_refusal(exc, what, region)
    return exc


_QUOTED_VALUE = re.compile(r'Invalid value: (?:"(?:[^"\\]|\\.)*"|\S+)')


def cluster_refusal(exc: ApiException, what: str, region: str | None = None) -> SpawnRefused:
    """Why the API server refused a request, in words that quote no field value: an
    ``Invalid`` answer quotes the offending values, and a pod's are its environment, the
    hub's API token included. The whole answer goes to the hub's log only as its reason."""
    try:
        status = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        status = {}
    status = status if isinstance(status, dict) else {}
    message = _QUOTED_VALUE.sub("Invalid value: [not shown]", str(status.get("message") or ""))
    if exc.status == 401:
        why = "it did not accept the hub's credentials"
    elif exc.status == 422:
        causes = (status.get("details") or {}).get("causes") or []
        fields = sorted({str(c.get("field")) for c in causes if isinstance(c, dict)} - {"None"})
        listed = f" ({', '.join(fields[:5])})" if fields else ""
        why = f"it found the server's pod invalid{listed}"
    else:
        why = message[:300] if message else f"HTTP {exc.status} {exc.reason or ''}".strip()
    where = f"The cluster of region {region!r}" if region else "The cluster"
    # The answer without its quoted values: the exception itself (whose text carries the
    # whole body) must not reach the log, so callers raise this refusal ``from None``.
    log.warning(
        "%s refused %s: HTTP %s %s: %s",
        where, what, exc.status, status.get("reason"), message,
    )  # fmt: skip
    return SpawnRefused(
        503,
        f"{where} refused {what}: {why}. Nothing was started. If this persists, tell your "
        "administrator, who will find the cluster's answer in the hub's log.",
    )


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
        failure: BaseException | None = loaded.exception()  # a Future of KubeSpawner's (Any)
        return failure
    return None


def _gave_up(reflector: Any) -> bool:
    """Whether a reflector's watch ended on its own: KubeSpawner's watch stops retrying
    after about 50 s of errors and, outside user namespaces, tells no one."""
    if reflector is None or reflector._stopping:
        return False
    task = reflector.watch_task
    return task is not None and task.done()


def _refused(start: asyncio.Future[Any] | None) -> bool:
    if start is None or not start.done() or start.cancelled():
        return False
    return isinstance(start.exception(), SpawnRefused)


class ApiRetries:
    """KubeSpawner mixin: the pod's create, the pod reflector's start and ``stop`` retried
    through transient API errors for ``k8s_api_request_retry_timeout`` seconds.

    - KubeSpawner retries a pod create only after its own timeout; a dropped connection
      failed the spawn. It is now retried too. A create whose answer was lost may have
      landed: the retry adopts the pod when the pod reflector shows it with this start's
      :data:`SPAWN_ID`; otherwise it sends the create itself, and a 409 means the pod is
      there (the reflector, or a read, then says whose). Otherwise KubeSpawner's 409
      handling would delete the user's new pod as a stale one and create it again. This
      wraps KubeSpawner's ``_make_create_pod_request`` (not a documented hook; its
      signature is pinned by a test).
    - A stop that gave up while the API server was away would leave the pod (and its
      GPUs) running for a server the hub forgets. Its delete is timed on the API server's
      answer alone, as the create is (``_make_delete_pod_request``, pinned by a test too).
    - KubeSpawner keeps a pod reflector whose initial list failed and hands it to every
      later spawn, which then waits its whole ``start_timeout`` for a pod that reflector
      never sees (KubeSpawner 7.x). A failed start is retried, replacing the dead reflector.
      The event reflector's start is retried the same way: a start waits for it as well.
      This wraps KubeSpawner's ``_start_watching_pods`` (not a documented hook): there is
      no other way in, and the wrapper only calls it again with ``replace=True``.
    - A pod reflector whose watch gave up (its API server away for longer than the
      watch's back-off, about 50 s: a region's cluster down for a minute) keeps its last
      list forever, so later spawns never see their pods and polls take running servers
      for gone. The next spawn or poll replaces it, with a fresh list.
    """

    k8s_api_request_retry_timeout: int
    k8s_api_request_timeout: int
    namespace: str
    # KubeSpawner's, as the spawner this is mixed into has them.
    log: logging.Logger
    api: Any
    pod_reflector: Any
    event_reflector: Any
    _create_unanswered = False
    _create_cause = ""
    _spawn_id = ""
    """The spawn-id annotation of the pod this start made (:data:`SPAWN_ID`)."""
    _queued_for = 0.0

    async def get_pod_manifest(self) -> Any:
        # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
        pod = await super().get_pod_manifest()  # type: ignore[misc]
        self._spawn_id = uuid.uuid4().hex
        pod.metadata.annotations = {**(pod.metadata.annotations or {}), SPAWN_ID: self._spawn_id}
        self._create_unanswered = False
        self._create_cause = ""
        return pod

    def unanswered_create(self, region: str, cluster: str) -> ApiUnavailable | None:
        """Why a start that timed out failed, when its pod's create was never answered:
        the error naming the region's API server (its address, never its credentials).
        None when the create was answered (the pod then did not start in time)."""
        if not self._create_unanswered:
            return None
        cause = self._last_answer
        where = f"cluster {cluster!r} at {server_address(getattr(self, 'api', None))}"
        return ApiUnavailable(
            f"Your server was not started: the Kubernetes API server of region {region!r} "
            f"({where}) did not accept its pod within {self.k8s_api_request_retry_timeout} "
            f"seconds (last answer: {cause}). Please try again in a few minutes; if this "
            "keeps happening, tell your platform team that this API server is not answering."
        )

    async def _make_create_pod_request(self, pod: Any, request_timeout: float) -> bool:
        """One attempt at the pod's create, as KubeSpawner's ``exponential_backoff`` calls
        it; an attempt that waited for one of the hub's connections is tried again here.

        ``exponential_backoff`` gives the create ``k8s_api_request_retry_timeout`` seconds
        of wall time from the first attempt. An attempt that first waited for a connection
        (23 s, seen at 1,000 spawns at once beside 4,000 users logged in) spends that
        window although the API server had the request for only its answer timeout, and
        the spawn failed with no retry left. Such an attempt is followed at once by
        another, so the window counts only what the API server was given; attempts that
        fail without waiting (a server that is down, or silent) go back to the backoff as
        before. The whole start stays bounded by ``start_timeout``."""
        while True:
            self._queued_for = 0.0
            created = await self._create_once(pod, request_timeout)
            if created or not self._create_unanswered or self._queued_for < QUEUED_AFTER:
                return created
            self.log.info(
                "pod %s: the create waited %.0f s for a connection to the API server; asking again",
                pod.metadata.name,
                self._queued_for,
            )

    async def _make_delete_pod_request(
        self, pod_name: str, delete_options: Any, grace_seconds: int, request_timeout: float
    ) -> bool:
        """One attempt at the pod's delete, as KubeSpawner's ``stop`` calls it through
        ``exponential_backoff``: True once the API server has it (or the pod is gone), False
        when its answer timed out (:func:`answer_timeout`, so the wait for one of the hub's
        connections does not count).

        KubeSpawner times the whole request. At a thousand stops at once, deletes waited in
        the hub's connection queue past its 3 s, were sent again four times, and after
        ``k8s_api_request_retry_timeout`` the stop gave up: JupyterHub, which drops a stop's
        exception without a word, forgot the server while its pod (and its GPUs) ran on
        (174 of 1,000 in one run)."""
        ref = f"{self.namespace}/{pod_name}"
        self.log.info("Deleting pod %s", ref)
        try:
            await self.api.delete_namespaced_pod(
                name=pod_name,
                namespace=self.namespace,
                body=delete_options,
                grace_period_seconds=grace_seconds,
                _request_timeout=answer_timeout(request_timeout),
            )
        except TimeoutError:
            return False
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.log.warning("No pod %s to delete. Assuming already deleted.", ref)
        return True

    async def _send_create(self, pod: Any, request_timeout: float) -> None:
        """The create, its answer timed (:func:`answer_timeout`); on a timeout,
        ``_queued_for`` is how much longer than that the request took: its wait for one
        of the hub's connections, before it was sent."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            await self.api.create_namespaced_pod(
                self.namespace, pod, _request_timeout=answer_timeout(request_timeout)
            )
        except TimeoutError:
            self._queued_for = max(0.0, loop.time() - began - request_timeout)
            raise

    async def _create_once(self, pod: Any, request_timeout: float) -> bool:
        if self._create_unanswered:
            landed = await self._landed(pod, request_timeout)
            if landed is not False:
                return bool(landed)  # ours (True), or not known yet (None: ask again later)
        # Sent here rather than by KubeSpawner, whose timeout also counts the time the request
        # waits for one of the hub's connections to the API server (shared by every spawn):
        # at a thousand spawns at once, creates timed out in that queue, were sent again at
        # its end, and spawns failed whose creates had never left the hub.
        self.log.info(
            "Attempting to create pod %s, with timeout %s", pod.metadata.name, request_timeout
        )
        try:
            await self._send_create(pod, request_timeout)
        except Exception as exc:
            if isinstance(exc, ApiException) and exc.status == 409:
                # A pod of that name from an earlier start: KubeSpawner's own handling (its
                # create meets the 409 again, stops the stale pod and asks for another try).
                parent = super()._make_create_pod_request  # type: ignore[misc]
                created: bool = await parent(pod, request_timeout)
                # False: the stale pod was stopped, or KubeSpawner's own create timed out
                # and may have landed; either way the next attempt asks first.
                self._create_unanswered = not created
                return created
            if not is_transient(exc):
                raise  # a refusal (quota, invalid pod), as KubeSpawner's create would raise it
            self._note_unanswered(pod, exc)
            self._create_unanswered = True  # it may have landed: the next attempt asks
            return False
        self._create_unanswered = False
        self._create_cause = ""
        return True

    @property
    def _last_answer(self) -> str:
        """What the API server last answered an unanswered create, in words."""
        return self._create_cause or f"no answer within {self.k8s_api_request_timeout} s"

    def _note_unanswered(self, pod: Any, exc: BaseException) -> None:
        if isinstance(exc, ApiException):
            self._create_cause = f"HTTP {exc.status}"
        elif isinstance(exc, TimeoutError):
            self._create_cause = ""  # no answer: unanswered_create says within how long
        else:
            self._create_cause = type(exc).__name__
        cause = self._last_answer
        self.log.warning("creating pod %s: %s; retrying", pod.metadata.name, cause)

    def _seen(self, name: str) -> dict[str, Any] | None:
        """The pod ``name`` as the pod reflector last saw it, if it saw one."""
        reflector = getattr(self, "pod_reflector", None)
        return reflector.pods.get(f"{self.namespace}/{name}") if reflector else None

    def _seen_ours(self, pod: Any) -> bool:
        """Whether the reflector shows ``pod`` with this start's id, not being deleted."""
        seen_meta = (self._seen(pod.metadata.name) or {}).get("metadata") or {}
        return (seen_meta.get("annotations") or {}).get(SPAWN_ID) == pod.metadata.annotations[
            SPAWN_ID
        ] and not seen_meta.get("deletionTimestamp")

    async def _landed(self, pod: Any, request_timeout: float) -> bool | None:
        """Whether the pod an unanswered create sent is (now) in the cluster with this start's
        id: True (adopt it, or it was just created), False (another start's pod holds the
        name: KubeSpawner's 409 handling replaces it), None when the API server cannot say
        yet. Sending KubeSpawner's create again could meet our own pod's 409, and KubeSpawner
        would delete it.

        The create is sent again here, as stock KubeSpawner does, and its answer is the
        question: 201, it had not landed; 409, a pod of that name exists, and the pod
        reflector says whose. Asking with a read first cost a request more for every create
        that had not landed, and under load (300 spawns at once, the hub's connections to
        the API server all busy) the read waited in the same queue as the create."""
        name = pod.metadata.name
        # The pod reflector sees a landed pod within moments; under load the API server that
        # left the create unanswered leaves a read unanswered too (seen at 300 spawns at
        # once: no pod adopted, each spawn failed after the retry timeout with its pod Running).
        if self._seen_ours(pod):
            self.log.info("pod %s: an unanswered create had landed; adopted", name)
            return True
        try:
            await self._send_create(pod, request_timeout)
        except Exception as exc:
            if isinstance(exc, ApiException) and exc.status == 409:
                pass  # a pod of that name exists: whose, below
            elif is_transient(exc):
                self._note_unanswered(pod, exc)
                return None
            else:
                raise  # a refusal (quota, invalid pod), as KubeSpawner's create would raise it
        else:
            self._create_unanswered = False
            return True
        # 409: a pod of that name exists. The reflector shows it within moments (the API
        # server has it); a read is the fallback when it does not.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request_timeout
        while getattr(self, "pod_reflector", None) and self._seen(name) is None:
            if loop.time() >= deadline:
                break
            await asyncio.sleep(0.1)
        if self._seen(name) is not None:
            mine = self._seen_ours(pod)
        else:
            try:
                found = await self.api.read_namespaced_pod(
                    name, self.namespace, _request_timeout=answer_timeout(request_timeout)
                )
            except Exception as exc:
                if isinstance(exc, ApiException) and exc.status == 404:
                    return False  # deleted since: the create is sent again
                if is_transient(exc):
                    return None
                raise
            ours = (found.metadata.annotations or {}).get(SPAWN_ID) == pod.metadata.annotations[
                SPAWN_ID
            ]
            mine = ours and found.metadata.deletion_timestamp is None
        if mine:
            self.log.info("pod %s: an unanswered create had landed; adopted", name)
        return mine

    async def _start_watching_pods(self, replace: bool = False) -> Any:
        # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
        parent = super()._start_watching_pods  # type: ignore[misc]
        return await self._start_watching(parent, "pod", self.pod_reflector, replace)

    async def _start_watching_events(self, replace: bool = False) -> Any:
        # Every start waits for the event reflector too (KubeSpawner's ``_start`` gathers
        # both): one whose first list met an outage failed the spawn with a 500, although
        # the pods' watch rode the outage out (seen in the storm test under CI's load).
        parent = super()._start_watching_events  # type: ignore[misc]
        return await self._start_watching(parent, "event", self.event_reflector, replace)

    async def _start_watching(self, parent: Any, kind: str, current: Any, replace: bool) -> Any:
        """``parent(replace=…)``, retried through transient errors; a dead reflector (its
        first list failed, or ``current``'s watch gave up) is replaced, never handed out
        again."""
        replacing = replace
        if not replace and _gave_up(current):
            self.log.warning(
                "the %s watch of cluster %s had given up; starting a new one",
                kind,
                getattr(self, "cluster_name", "hub"),
            )
            replacing = True

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
            what=f"listing the cluster's {kind}s",
            timeout=self.k8s_api_request_retry_timeout,
        )

    async def poll(self) -> int | None:
        if _refused(getattr(self, "_start_future", None)):
            # Nothing reached the cluster (see stop): no server, and no question to ask the API
            # server. JupyterHub polls before it stops a failed start, and KubeSpawner's poll
            # starts the pod reflector first: while the API server is away that waits
            # k8s_api_request_retry_timeout, and the refused spawn's handler answers 500.
            return 0
        # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
        return await super().poll()  # type: ignore[misc, no-any-return]

    async def stop(self, now: bool = False) -> None:
        # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
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
