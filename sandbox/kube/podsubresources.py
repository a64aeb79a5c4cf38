"""Pod subresources served from the node: ``pods/log`` and ``pods/exec``.

A real API server proxies these to the pod's kubelet. The emulated one reads
what the process kubelet wrote under its ``log_dir`` (one file per container
instance, ``<ns>/<pod>/<uid>/<container>/<restartCount>.log``), and hands
``exec`` to the kubelet's :meth:`exec_in` over the remote-command WebSocket
(SPDY, which older clients used, is not served).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import WSMsgType, web

from .errors import ApiError, bad_request
from .podlogs import instance_log, pod_log_dir
from .store import Obj, Store

FOLLOW_POLL_SECONDS = 0.1


def _container(request: web.Request, pod: Obj) -> str:
    name = pod["metadata"]["name"]
    containers = [c["name"] for c in pod["spec"].get("containers", [])]
    container = request.query.get("container") or (containers[0] if len(containers) == 1 else None)
    if container is None:
        raise bad_request(
            f"a container name must be specified for pod {name}, choose one of: {containers}"
        )
    if container not in containers:
        raise bad_request(f"container {container} is not valid for pod {name}")
    return container


def _status(pod: Obj, container: str) -> Obj:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return dict(status)
    return {}


def _int(request: web.Request, key: str) -> int | None:
    value = request.query.get(key)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise bad_request(f"{key}: invalid value {value!r}: must be an integer") from None
    if number < (1 if key == "limitBytes" else 0):
        raise bad_request(f"{key}: Invalid value: {number}: must be greater than 0")
    return number


async def log(
    request: web.Request, store: Store, pod: Obj, log_dir: Path | None
) -> web.StreamResponse:
    meta = pod["metadata"]
    name, ns, uid = meta["name"], meta["namespace"], meta["uid"]
    container = _container(request, pod)
    tail, limit = _int(request, "tailLines"), _int(request, "limitBytes")
    if request.query.get("timestamps") in ("true", "1"):
        raise bad_request("timestamps are not kept by the emulated kubelet's logs")
    status = _status(pod, container)
    restarts = int(status.get("restartCount", 0))
    previous = request.query.get("previous") in ("true", "1")
    if previous:
        if restarts == 0:
            raise bad_request(
                f'previous terminated container "{container}" in pod "{name}" not found'
            )
        restarts -= 1
    path = (
        instance_log(pod_log_dir(log_dir, ns, name, uid), container, restarts) if log_dir else None
    )
    if path is None or not path.exists():
        raise bad_request(
            f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
        )
    data = path.read_bytes()
    if tail is not None:
        data = b"".join(data.splitlines(keepends=True)[-tail:]) if tail else b""
    if limit is not None:
        data = data[:limit]
    follow = request.query.get("follow") in ("true", "1") and not previous
    if not follow:
        return web.Response(body=data, content_type="text/plain")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    await response.write(data)
    sent, offset = len(data), path.stat().st_size
    # Follow the current container instance until it ends, as `kubectl logs -f` does.
    while limit is None or sent < limit:
        with path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
        if chunk:
            offset += len(chunk)
            if limit is not None:
                chunk = chunk[: limit - sent]
            sent += len(chunk)
            try:
                await response.write(chunk)
            except ConnectionError:
                break
            continue
        current = store.get("pods", ns, name)
        if current is None or current["metadata"]["uid"] != uid:
            break
        now = _status(current, container)
        if int(now.get("restartCount", 0)) != restarts or "terminated" in (now.get("state") or {}):
            break
        if request.transport is None or request.transport.is_closing():
            break
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
    return response


# -- exec ---------------------------------------------------------------------------
# The channel protocols of the Kubernetes remote-command WebSocket: each binary message
# starts with its stream's number. v5 adds a CLOSE message (255, stream) for half-close.
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
ExecRunner = Callable[..., Awaitable[asyncio.subprocess.Process]]


def _exit_status(command: list[str], code: int) -> Obj:
    """The Status a kubelet sends on the error stream when the command ends."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
        f"[{' '.join(command)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


async def _pump(
    stream: asyncio.StreamReader | None, ws: web.WebSocketResponse, channel: int
) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        await ws.send_bytes(bytes([channel]) + chunk)


async def exec_(request: web.Request, pod: Obj, runner: ExecRunner | None) -> web.StreamResponse:
    """``pods/exec`` over a WebSocket, as kubectl (1.31 and later) and client-go speak it."""
    name = pod["metadata"]["name"]
    container = _container(request, pod)
    command = request.query.getall("command", [])
    if not command:
        raise bad_request("you must specify at least 1 command")
    flags = {k: request.query.get(k) in ("true", "1") for k in ("stdin", "stdout", "stderr", "tty")}
    if not (flags["stdin"] or flags["stdout"] or flags["stderr"]):
        raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise bad_request("Upgrade request required")
    if pod.get("status", {}).get("phase") != "Running":
        raise bad_request(
            f'unable to upgrade connection: container not found ("{container}") in pod {name}'
        )
    if runner is None:
        # A real API server whose node's kubelet cannot be reached answers so.
        raise ApiError(500, "InternalError", "error dialing backend: no kubelet serves this node")
    ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, max_msg_size=0)
    await ws.prepare(request)
    if ws.ws_protocol not in EXEC_PROTOCOLS:
        await ws.close(message=b"unsupported remote command protocol")
        return ws
    meta = pod["metadata"]
    try:
        process = await runner(meta["namespace"], name, container, command, stdin=flags["stdin"])
    except Exception as exc:  # the kubelet's own refusal travels on the error channel
        failure = {"metadata": {}, "status": "Failure", "message": str(exc)}
        await ws.send_bytes(bytes([ERROR]) + json.dumps(failure).encode())
        await ws.close()
        return ws
    stderr_channel = STDOUT if flags["tty"] else STDERR  # a TTY has one output stream
    pumps = [
        asyncio.create_task(_pump(process.stdout, ws, STDOUT)),
        asyncio.create_task(_pump(process.stderr, ws, stderr_channel)),
    ]

    async def feed() -> None:
        async for message in ws:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            channel, data = message.data[0], message.data[1:]
            if channel == STDIN and process.stdin is not None:
                process.stdin.write(data)
                await process.stdin.drain()
            elif channel == CLOSE and data[:1] == bytes([STDIN]) and process.stdin is not None:
                process.stdin.close()

    feeder = asyncio.create_task(feed())
    try:
        code = await process.wait()
        await asyncio.gather(*pumps)
        status = _exit_status(command, code)
        await ws.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
    finally:
        feeder.cancel()
        if process.returncode is None:
            process.kill()
        await ws.close()
    return ws
