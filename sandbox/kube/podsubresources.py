"""Pod subresources served from the node: ``pods/log`` (and, on a real cluster, exec).

A real API server proxies these to the pod's kubelet; the emulated one reads
what the process kubelet wrote under its ``log_dir``.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from .errors import bad_request
from .store import Obj


def log(request: web.Request, pod: Obj, log_dir: Path | None) -> web.Response:
    name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
    containers = [c["name"] for c in pod["spec"].get("containers", [])]
    container = request.query.get("container") or (containers[0] if len(containers) == 1 else None)
    if container is None:
        raise bad_request(
            f"a container name must be specified for pod {name}, choose one of: {containers}"
        )
    if container not in containers:
        raise bad_request(f"container {container} is not valid for pod {name}")
    path = log_dir / ns / name / f"{container}.log" if log_dir else None
    if path is None or not path.exists():
        raise bad_request(
            f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
        )
    lines = path.read_text(errors="replace").splitlines(keepends=True)
    if tail := request.query.get("tailLines"):
        lines = lines[-int(tail) :]
    return web.Response(text="".join(lines), content_type="text/plain")
