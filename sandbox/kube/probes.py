"""Readiness probes, run as a kubelet runs them.

``httpGet`` (a 2xx or 3xx answers success; redirects are not followed),
``tcpSocket`` and ``exec`` (in the pod's network, through ``wrap``), each
within ``timeoutSeconds``, every ``periodSeconds`` (at most 1 s here, so
tests need not wait), Ready flipping only after ``failureThreshold`` failures.
Failure messages are worded as a real kubelet words them in its
``Unhealthy`` events. Liveness and startup probes are not run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

REPEAT_EVENT_AFTER = 30.0
Wrap = Callable[[list[str]], list[str]]
"""Turns a command line into one that runs in the pod's network."""


async def watch_readiness(
    probe: dict[str, Any],
    container: dict[str, Any],
    ip: str,
    wrap: Wrap,
    *,
    unhealthy: Callable[[str], Awaitable[None]],
    ready_changed: Callable[[bool], Awaitable[None]],
) -> None:
    """Probe until cancelled, calling ``unhealthy`` with why a probe failed (repeats folded)
    and ``ready_changed`` when readiness flips."""
    await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
    period = min(float(probe.get("periodSeconds", 10)), 1.0)
    threshold = int(probe.get("failureThreshold", 3))
    ready, failures, last_unhealthy = False, 0, -REPEAT_EVENT_AFTER
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    async with aiohttp.ClientSession() as session:
        while True:
            failure = await check(session, probe, ports, ip, wrap)
            ok = failure is None
            failures = 0 if ok else failures + 1
            # Repeats are folded, as the kubelet's event correlator folds them.
            if not ok and time.monotonic() - last_unhealthy > REPEAT_EVENT_AFTER:
                last_unhealthy = time.monotonic()
                await unhealthy(f"Readiness probe failed: {failure}")
            if ok != ready and (ok or failures >= threshold):
                ready = ok
                await ready_changed(ready)
            await asyncio.sleep(period)


async def check(
    session: aiohttp.ClientSession,
    probe: dict[str, Any],
    ports: dict[Any, Any],
    ip: str,
    wrap: Wrap,
) -> str | None:
    """None when the probe succeeds, else why it failed, worded as a kubelet words it."""
    timeout = float(probe.get("timeoutSeconds", 1))
    if http := probe.get("httpGet"):
        port = ports.get(http["port"], http["port"])
        scheme = http.get("scheme", "HTTP").lower()
        url = f"{scheme}://{ip}:{port}{http.get('path', '/')}"
        try:
            async with session.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
            ) as r:
                if 200 <= r.status < 400:
                    return None
                return f"HTTP probe failed with statuscode: {r.status}"
        except TimeoutError:
            return f'Get "{url}": context deadline exceeded'
        except (OSError, aiohttp.ClientError) as exc:
            return f'Get "{url}": {_reason(exc)}'
    if tcp := probe.get("tcpSocket"):
        port = ports.get(tcp["port"], tcp["port"])
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(ip, int(port))
            writer.close()
            return None
        except TimeoutError:
            return f"dial tcp {ip}:{port}: i/o timeout"
        except OSError as exc:
            return f"dial tcp {ip}:{port}: {_reason(exc)}"
    if command := (probe.get("exec") or {}).get("command"):
        try:
            proc = await asyncio.create_subprocess_exec(
                *wrap(command),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            async with asyncio.timeout(timeout):
                code = await proc.wait()
        except TimeoutError:
            return f"command timed out after {timeout:g}s"
        except OSError as exc:
            return f"exec failed: {_reason(exc)}"
        return None if code == 0 else f"command exited with {code}"
    return "probe has no handler"


def _reason(exc: BaseException) -> str:
    # aiohttp wraps the socket error; the innermost one says what happened
    # ("connect: connection refused" on a real kubelet).
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused"
    return str(exc) or type(exc).__name__
