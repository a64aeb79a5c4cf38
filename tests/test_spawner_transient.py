"""Riding out a briefly absent API server: which errors are retried, for how long, and
what the user reads when waiting did not help (spawner/transient.py)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes_asyncio.client.exceptions import ApiException

from sovereign_hub.refusals import SpawnRefused
from sovereign_hub.sandbox.hubprocess import Hub
from sovereign_hub.spawner.transient import (
    SPAWN_ID,
    ApiRetries,
    ApiUnavailable,
    clear_failure,
    is_transient,
    retry_transient,
    server_address,
)
from tests.conftest import ROOT, TEST_NODES
from tests.hubs import refuse_pod_creates, sovereign_hub_config
from tests.test_spawner_hub import add_users, progress_events, spawn

POLICY = ROOT / "examples" / "policy.yaml"


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
    _stopping = False
    watch_task: asyncio.Task | None = None  # as KubeSpawner's, before its watch starts

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

    @property
    def pod_reflector(self) -> _Reflector | None:
        return self.registered

    async def _start_watching_pods(self, replace: bool = False) -> _Reflector:
        return await self._watch(replace)

    async def _watch(self, replace: bool) -> _Reflector:
        self.calls.append(replace)
        if self.registered is not None and not replace:
            return self.registered
        failed = self.failures > 0
        self.failures -= 1
        self.registered = _Reflector(aiohttp.ClientConnectionError() if failed else None)
        return self.registered


class _KubeSpawnerEvents(_KubeSpawner):
    """The same for the event reflector, which KubeSpawner's start also waits for."""

    @property
    def event_reflector(self) -> _Reflector | None:
        return self.registered

    async def _start_watching_events(self, replace: bool = False) -> _Reflector:
        return await self._watch(replace)


class _Spawner(ApiRetries, _KubeSpawnerEvents):
    k8s_api_request_retry_timeout = 5


@pytest.mark.parametrize("start", ["_start_watching_pods", "_start_watching_events"])
async def test_a_reflector_whose_first_list_failed_is_replaced_not_reused(start):
    """The event reflector's too: seen in the storm test, a first list of events that met
    an API server restart failed the spawn while the pods' watch rode the outage out."""
    spawner = _Spawner(failures=2)
    first = await getattr(spawner, start)()
    assert first.first_load_future.exception() is None
    assert spawner.calls == [False, True, True]
    # Later spawns get the healthy reflector without replacing it.
    assert await getattr(spawner, start)() is first


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


class _Cluster:
    """Pods by name, as an API server keeps them. ``drop``: answers of the next creates are
    lost after the pod is stored (a connection dropped as the server died); ``away``: the
    next requests after that are refused (the server still down); ``timeouts``: the next
    creates get no answer and never reach the server."""

    def __init__(
        self, drop: int = 0, away: int = 0, timeouts: int = 0, queued: float = 0.0
    ) -> None:
        self.pods: dict[str, SimpleNamespace] = {}
        self.drop = drop
        self.away = away
        self.timeouts = timeouts
        self.queued = queued  # how long each timed-out create first waits for a connection
        self.answer_within = 3.0
        self.deleted: list[str] = []
        self.reads = 0
        self.creates = 0

    async def create_namespaced_pod(
        self, namespace: str, body: SimpleNamespace, *, _request_timeout: object = None
    ) -> None:
        """The spawner's own create: the server's answer is timed, not the wait for one
        of the client's connections."""
        assert isinstance(_request_timeout, aiohttp.ClientTimeout)
        assert _request_timeout.total is None
        assert _request_timeout.connect is None
        assert _request_timeout.sock_read == self.answer_within
        self.creates += 1
        if self.timeouts:
            self.timeouts -= 1
            # aiohttp's read timeout: the request waited, then the server stayed silent.
            await asyncio.sleep(self.queued + self.answer_within)
            raise aiohttp.ServerTimeoutError("Timeout on reading data from socket")
        if body.metadata.name not in self.pods and self.drop:
            self.drop -= 1
            self._store(body)
            raise aiohttp.ServerDisconnectedError()
        if self.away:
            self.away -= 1
            raise aiohttp.ClientConnectorError(None, OSError(111, "refused"))  # type: ignore[arg-type]
        if body.metadata.name in self.pods:
            raise ApiException(status=409)
        self._store(body)

    def _store(self, body: SimpleNamespace) -> None:
        stored = copy.deepcopy(body)
        stored.metadata.deletion_timestamp = None
        self.pods[body.metadata.name] = stored

    async def read_namespaced_pod(
        self, name: str, namespace: str, *, _request_timeout: object = None
    ) -> SimpleNamespace:
        assert isinstance(_request_timeout, aiohttp.ClientTimeout)
        self.reads += 1
        if self.away:
            self.away -= 1
            raise aiohttp.ClientConnectorError(None, OSError(111, "refused"))  # type: ignore[arg-type]
        if name not in self.pods:
            raise ApiException(status=404)
        return self.pods[name]


class _Creating:
    """KubeSpawner's pod create, which the spawner calls only when its own create met a 409:
    the existing pod is deleted as stale and another attempt asked for."""

    namespace = "ns"
    log = logging.getLogger("test")

    def __init__(self, cluster: _Cluster) -> None:
        self.api = cluster

    async def get_pod_manifest(self) -> SimpleNamespace:
        return SimpleNamespace(metadata=SimpleNamespace(name="jupyter-ana", annotations=None))

    async def _make_create_pod_request(self, pod: SimpleNamespace, request_timeout: float) -> bool:
        cluster = self.api
        if pod.metadata.name in cluster.pods:
            cluster.deleted.append(pod.metadata.name)  # KubeSpawner: stop(now=True)
            del cluster.pods[pod.metadata.name]
            return False
        cluster._store(pod)
        return True


class _CreatingSpawner(ApiRetries, _Creating):
    k8s_api_request_retry_timeout = 5
    k8s_api_request_timeout = 3


async def _create(spawner: _CreatingSpawner) -> int:
    """Attempts until the create succeeds, as KubeSpawner's exponential_backoff makes them."""
    pod = await spawner.get_pod_manifest()
    for attempt in range(1, 10):
        if await spawner._make_create_pod_request(pod, 3):
            return attempt
    raise AssertionError("never created")


async def test_a_create_whose_answer_was_lost_adopts_its_own_pod_instead_of_deleting_it():
    """Before, the dropped connection failed the spawn; retried as KubeSpawner retries its
    timeouts, the create met its own pod's 409, and KubeSpawner deleted it as stale."""
    cluster = _Cluster(drop=1, away=2)
    spawner = _CreatingSpawner(cluster)
    assert await _create(spawner) == 4  # the lost answer, two creates refused, the adoption
    assert list(cluster.pods) == ["jupyter-ana"]
    assert cluster.deleted == []


async def test_a_landed_pod_the_reflector_sees_is_adopted_while_reads_go_unanswered():
    """Under load (300 spawns at once) the API server left the create and then every read
    unanswered: no pod was adopted, and each spawn failed after the retry timeout while its
    pod ran. The pod reflector had seen the pod with this start's id: that is enough."""
    cluster = _Cluster(drop=1, away=100)
    spawner = _CreatingSpawner(cluster)
    pod = await spawner.get_pod_manifest()
    assert await spawner._make_create_pod_request(pod, 3) is False  # the lost answer
    assert await spawner._make_create_pod_request(pod, 3) is False  # the read unanswered too
    stored = cluster.pods["jupyter-ana"]
    spawner.pod_reflector = SimpleNamespace(pods={"ns/jupyter-ana": {"metadata": {
        "name": "jupyter-ana", "annotations": dict(stored.metadata.annotations)}}})  # fmt: skip
    assert await spawner._make_create_pod_request(pod, 3) is True
    assert cluster.deleted == []
    # Another start's pod in the reflector is not adopted: the API server is asked.
    spawner.pod_reflector.pods["ns/jupyter-ana"]["metadata"]["annotations"][SPAWN_ID] = "x"
    spawner._create_unanswered = True
    assert await spawner._make_create_pod_request(pod, 3) is False


async def test_a_create_that_never_landed_is_sent_again_without_a_read_first():
    """Before, the retry read the pod first (404) and then created it: two requests in the
    queue of a busy API server where one does, and the read waited as long as the create."""
    cluster = _Cluster(timeouts=1)
    spawner = _CreatingSpawner(cluster)
    assert await _create(spawner) == 2
    assert cluster.reads == 0
    assert cluster.creates == 2
    pod = cluster.pods["jupyter-ana"]
    assert pod.metadata.annotations[SPAWN_ID]
    assert cluster.deleted == []


async def test_a_landed_create_is_told_by_its_409_and_the_reflector_without_a_read():
    """The create had landed, but the pod reflector had not shown it yet when the retry
    came: the create sent again meets the pod's 409, and the reflector, which shows the pod
    moments later, says it carries this start's id. No read, and the pod is kept."""
    cluster = _Cluster(drop=1)
    spawner = _CreatingSpawner(cluster)
    spawner.pod_reflector = SimpleNamespace(pods={})
    pod = await spawner.get_pod_manifest()
    assert await spawner._make_create_pod_request(pod, 3) is False  # the lost answer
    stored = cluster.pods["jupyter-ana"]

    async def watch_event() -> None:
        await asyncio.sleep(0.2)
        spawner.pod_reflector.pods["ns/jupyter-ana"] = {"metadata": {
            "name": "jupyter-ana", "annotations": dict(stored.metadata.annotations)}}  # fmt: skip

    seen = asyncio.ensure_future(watch_event())
    assert await spawner._make_create_pod_request(pod, 3) is True
    await seen
    assert cluster.reads == 0
    assert cluster.deleted == []


async def test_a_stale_pod_of_an_earlier_server_is_still_replaced():
    cluster = _Cluster()
    stale = SimpleNamespace(
        metadata=SimpleNamespace(annotations={SPAWN_ID: "earlier"}, deletion_timestamp=None)
    )
    cluster.pods["jupyter-ana"] = stale
    spawner = _CreatingSpawner(cluster)
    await _create(spawner)
    assert cluster.deleted == ["jupyter-ana"]  # KubeSpawner's 409 handling, as before
    assert cluster.pods["jupyter-ana"].metadata.annotations[SPAWN_ID] != "earlier"


async def test_a_create_that_waited_for_a_connection_does_not_spend_the_retry_window():
    """At 1,000 spawns at once beside 4,000 users logged in, a create waited 23 s for a
    connection, then had no answer within 3 s: KubeSpawner's 30 s retry window was spent
    and the spawn failed with no second attempt. The attempt that waited is now followed
    at once by another, inside the same call of KubeSpawner's backoff."""
    from functools import partial

    from jupyterhub.utils import exponential_backoff

    cluster = _Cluster(timeouts=1, queued=1.2)
    cluster.answer_within = 0.1
    spawner = _CreatingSpawner(cluster)
    pod = await spawner.get_pod_manifest()
    attempt = partial(spawner._make_create_pod_request, pod, 0.1)
    await exponential_backoff(attempt, "Could not create pod", timeout=0.5)
    assert "jupyter-ana" in cluster.pods
    assert cluster.creates == 2
    assert cluster.deleted == []


async def test_a_silent_api_server_still_ends_the_retry_window():
    """Creates that were sent at once and met silence did not wait for a connection: they
    go back to KubeSpawner's backoff, whose window ends the start as before."""
    from functools import partial

    from jupyterhub.utils import exponential_backoff

    cluster = _Cluster(timeouts=1000)
    cluster.answer_within = 0.1
    spawner = _CreatingSpawner(cluster)
    pod = await spawner.get_pod_manifest()
    attempt = partial(spawner._make_create_pod_request, pod, 0.1)
    with pytest.raises(TimeoutError, match="Could not create pod"):
        await exponential_backoff(attempt, "Could not create pod", timeout=0.5)
    assert 1 <= cluster.creates <= 6
    assert str(spawner.unanswered_create("eu", "hub")).count("no answer within 3 s") == 1


@contextlib.asynccontextmanager
async def one_connection_client(app: Any) -> AsyncIterator[Any]:
    """A kubernetes_asyncio client of ``app`` (a real aiohttp server on loopback) with one
    pooled connection: requests beyond the first wait for it, as a hub's do at a burst."""
    from aiohttp import web
    from kubernetes_asyncio import client

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = client.Configuration(host=f"http://127.0.0.1:{port}")
    config.connection_pool_maxsize = 1
    try:
        async with client.ApiClient(config) as api_client:
            yield api_client
    finally:
        await runner.cleanup()


async def test_a_create_waiting_for_one_of_the_hubs_connections_is_not_timed_out():
    """At a thousand spawns at once, creates waited for one of the hub's pooled connections
    to the API server past KubeSpawner's 3 s timeout, were sent again at the end of the
    queue, and spawns failed whose creates had never left the hub. Against a real aiohttp
    server through kubernetes_asyncio, with a pool of one connection and an API server
    answering in 0.3 s: five creates at once all land with a 1 s answer timeout (the last
    waits about 1.5 s in the pool); KubeSpawner's way of timing them fails the last ones."""
    from aiohttp import web
    from kubernetes_asyncio import client

    from sovereign_hub.spawner.transient import answer_timeout

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(0.3)
        return web.json_response(body, status=201)

    app = web.Application()
    app.router.add_post("/api/v1/namespaces/{ns}/pods", create)
    async with one_connection_client(app) as api_client:
        api = client.CoreV1Api(api_client)

        def pod(i: int) -> dict:
            return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p{i}"}}

        answered = await asyncio.gather(
            *(
                api.create_namespaced_pod("ns", pod(i), _request_timeout=answer_timeout(1))
                for i in range(5)
            )
        )
        assert [p.metadata.name for p in answered] == [f"p{i}" for i in range(5)]
        timed_whole = await asyncio.gather(
            *(asyncio.wait_for(api.create_namespaced_pod("ns", pod(i)), 1) for i in range(5)),
            return_exceptions=True,
        )
        assert any(isinstance(r, TimeoutError) for r in timed_whole)


async def test_each_start_marks_its_pod_with_a_new_id():
    spawner = _CreatingSpawner(_Cluster())
    first, second = await spawner.get_pod_manifest(), await spawner.get_pod_manifest()
    assert first.metadata.annotations[SPAWN_ID] != second.metadata.annotations[SPAWN_ID]


# The private KubeSpawner members these retries wrap are pinned in test_kubespawner_seams.


def _refusal(status: int, reason: str, body: dict) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", **body})
    return exc


def test_a_quota_refusal_tells_the_user_why_naming_the_region():
    """A real API server's answer when a ResourceQuota is full (403 Forbidden)."""
    exc = _refusal(403, "Forbidden", {"reason": "Forbidden", "code": 403, "message": (
        'pods "jupyter-bob" is forbidden: exceeded quota: notebooks, requested: '
        "requests.cpu=2, used: requests.cpu=7, limited: requests.cpu=8")})  # fmt: skip
    refused = clear_failure(exc, "starting the server", "us")
    assert isinstance(refused, SpawnRefused)
    assert refused.status_code == 503
    assert refused.jupyterhub_message.startswith(
        "The cluster of region 'us' refused starting the server: pods \"jupyter-bob\" is "
        "forbidden: exceeded quota: notebooks"
    )
    assert "Nothing was started" in refused.jupyterhub_message


def test_an_invalid_pod_is_refused_without_quoting_its_values(caplog):
    """A 422 quotes the offending values, and a pod's environment holds the hub's API token:
    neither the user's message nor the log may repeat it."""
    token = "0123456789abcdef0123456789abcdef"
    field = "spec.containers[0].env[3].value"
    exc = _refusal(422, "Unprocessable Entity", {
        "reason": "Invalid", "code": 422,
        "message": f'Pod "jupyter-bob" is invalid: {field}: Invalid value: "{token}": too long',
        "details": {"causes": [{"reason": "FieldValueInvalid", "field": field,
                                "message": f'Invalid value: "{token}": too long'}]},
    })  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        refused = clear_failure(exc, "starting the server", "eu")
    assert isinstance(refused, SpawnRefused)
    assert f"it found the server's pod invalid ({field})" in refused.jupyterhub_message
    assert token not in refused.jupyterhub_message
    assert token not in caplog.text
    assert "Invalid value: [not shown]" in caplog.text


def test_refused_credentials_say_so_and_other_errors_pass_through():
    refused = clear_failure(_refusal(401, "Unauthorized", {}), "starting the server", "us")
    assert "did not accept the hub's credentials" in refused.jupyterhub_message
    kept = ValueError("the image is not pinned")
    assert clear_failure(kept, "starting the server", "us") is kept


class _Unanswered:
    """KubeSpawner's create meeting an API server that refuses it (or never answers)."""

    namespace = "ns"
    log = logging.getLogger("test")
    k8s_api_request_timeout = 3
    k8s_api_request_retry_timeout = 30

    def __init__(self, failure: BaseException | None) -> None:
        # None: no answer in time (aiohttp's read timeout).
        self.failure = failure or aiohttp.ServerTimeoutError("Timeout on reading data")
        config = SimpleNamespace(host="https://admin:pw@10.0.0.1:6443")

        async def create_namespaced_pod(*args: object, **kwargs: object) -> None:
            raise self.failure

        self.api = SimpleNamespace(
            api_client=SimpleNamespace(configuration=config),
            create_namespaced_pod=create_namespaced_pod,
        )

    async def get_pod_manifest(self) -> SimpleNamespace:
        return SimpleNamespace(metadata=SimpleNamespace(name="jupyter-ana", annotations=None))


class _UnansweredSpawner(ApiRetries, _Unanswered):
    pass


@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        (ApiException(status=503), "HTTP 503"),
        (ApiException(status=429), "HTTP 429"),
        (aiohttp.ServerDisconnectedError(), "ServerDisconnectedError"),
        (None, "no answer within 3 s"),
    ],
)
async def test_a_create_never_answered_names_the_regions_api_server(failure, cause):
    spawner = _UnansweredSpawner(failure)
    pod = await spawner.get_pod_manifest()
    assert spawner.unanswered_create("eu", "eu-main") is None  # nothing sent yet
    assert await spawner._make_create_pod_request(pod, 3) is False
    message = str(spawner.unanswered_create("eu", "eu-main"))
    assert message == (
        "Your server was not started: the Kubernetes API server of region 'eu' (cluster "
        f"'eu-main' at https://10.0.0.1:6443) did not accept its pod within 30 seconds (last "
        f"answer: {cause}). Please try again in a few minutes; if this keeps happening, tell "
        "your platform team that this API server is not answering."
    )
    assert "pw" not in message  # the address, never the credentials a URL may carry


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("https://10.0.0.1:6443", "https://10.0.0.1:6443"),
        ("https://user:secret@api.example", "https://api.example"),
        ("https://[fd00::1]:6443/", "https://[fd00::1]:6443"),
        ("", "(unknown address)"),
    ],
)
def test_the_api_servers_address_is_given_without_credentials(host, address):
    api = SimpleNamespace(api_client=SimpleNamespace(configuration=SimpleNamespace(host=host)))
    assert server_address(api) == address


async def test_a_pod_create_never_accepted_fails_naming_the_api_server_not_a_slow_start(
    make_cluster, tmp_path, monkeypatch
):
    """A real hub; the emulated API server (no real one runs here) is made to answer every
    pod create 503. After ``k8s_api_request_retry_timeout`` the user reads that the region's
    API server did not accept the pod, with its address and no credentials, not that the
    server "did not start in time"."""
    refuse_pod_creates(monkeypatch, [503] * 10_000)
    kube = make_cluster(TEST_NODES)
    settings = {"k8s_api_request_retry_timeout": 6, "start_timeout": 120}
    # The spawn outlives slow_spawn_timeout, so the user reads the failure on the progress page.
    slow = 'c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 1}'
    config = "\n".join([*sovereign_hub_config(kube, POLICY, **settings), slow])
    hub = Hub(tmp_path / "hub", config, env={"KUBECONFIG": str(kube.kubeconfig)})
    try:
        add_users(hub, "eu-researchers", "ana")
        assert spawn(hub, "ana", profile="cpu-small", region="eu").status_code in (201, 202)
        events = progress_events(hub, "ana", timeout=120)
    finally:
        hub.stop()
    assert events[-1]["failed"] is True, events
    message = events[-1]["message"]
    assert f"the Kubernetes API server of region 'eu' (cluster 'hub' at {kube.server})" in message
    assert "last answer: HTTP 503" in message
    assert "did not start" not in message
    token = yaml.safe_load(kube.kubeconfig.read_text())["users"][0]["user"]["token"]
    assert token not in message


class _Deleting:
    namespace = "ns"
    log = logging.getLogger("test-delete")

    def __init__(self, api: Any) -> None:
        self.api = api


class _DeletingSpawner(ApiRetries, _Deleting):
    pass


async def test_a_stops_delete_waiting_for_one_of_the_hubs_connections_is_not_timed_out():
    """At a thousand stops at once, deletes waited for one of the hub's pooled connections
    past KubeSpawner's 3 s, and after 30 s of such attempts the stop gave up, leaving the
    pod running for a server JupyterHub forgot. Against a real aiohttp server through
    kubernetes_asyncio, with a pool of one connection and an API server answering in 0.3 s:
    five deletes at once are all taken with a 1 s answer timeout; KubeSpawner's own attempt
    times some of them out. A pod already gone counts as deleted; a silent API server's
    delete times out (False: KubeSpawner's backoff asks again)."""
    from aiohttp import web
    from kubernetes_asyncio import client
    from kubespawner import KubeSpawner

    silent = asyncio.Event()

    async def delete(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "gone":
            return web.json_response(
                {"kind": "Status", "code": 404, "reason": "NotFound"}, status=404
            )
        if name == "silent":
            await silent.wait()
        await asyncio.sleep(0.3)
        return web.json_response({"kind": "Pod", "metadata": {"name": name}})

    app = web.Application()
    app.router.add_delete("/api/v1/namespaces/{ns}/pods/{name}", delete)
    async with one_connection_client(app) as api_client:
        spawner = _DeletingSpawner(client.CoreV1Api(api_client))
        options = client.V1DeleteOptions(grace_period_seconds=1)
        taken = await asyncio.gather(
            *(spawner._make_delete_pod_request(f"p{i}", options, 1, 1) for i in range(5))
        )
        assert taken == [True] * 5
        kubespawners = await asyncio.gather(
            *(
                KubeSpawner._make_delete_pod_request(spawner, f"p{i}", options, 1, 1)
                for i in range(5)
            )
        )
        assert False in kubespawners  # timed out in the queue: the stop's window spent
        assert await spawner._make_delete_pod_request("gone", options, 1, 1) is True
        assert await spawner._make_delete_pod_request("silent", options, 1, 0.5) is False
        silent.set()
