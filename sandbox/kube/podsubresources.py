"""Pod subresources served from the node: ``pods/log`` and ``pods/exec``.

A real API server proxies these to the pod's kubelet; the emulated one reads
what the process kubelet wrote under its ``log_dir`` (one file per container
instance, ``<ns>/<pod>/<uid>/<container>/<restartCount>.log``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from .errors import bad_request
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
    path = log_dir / ns / name / uid / container / f"{restarts}.log" if log_dir else None
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
