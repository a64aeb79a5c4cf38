"""List, then watch from the list's resourceVersion, keeping a local cache current.

The pattern client-go's informers and KubeSpawner's reflector follow: a 410
(history compacted) or any other error means relisting. ``on_change`` is
called for each event, and with ``("SYNC", None)`` after every full list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.watch import Watch

from . import rawapi

log = logging.getLogger(__name__)
Handler = Callable[[str, dict[str, Any] | None], Awaitable[None] | None]


def key_of(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


class Informer:
    def __init__(
        self,
        list_method: Callable[..., Any],
        on_change: Handler | None = None,
        *,
        watch_timeout: int = 240,
        **selectors: Any,
    ) -> None:
        self.list_method = list_method
        self.on_change = on_change
        self.selectors = selectors
        self.watch_timeout = watch_timeout
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.synced = asyncio.Event()

    async def _notify(self, kind: str, obj: dict[str, Any] | None) -> None:
        if self.on_change is not None:
            result = self.on_change(kind, obj)
            if asyncio.iscoroutine(result):
                await result

    async def _list(self) -> str:
        data = await rawapi.call(self.list_method, **self.selectors)
        self.items = {key_of(o): o for o in data["items"]}
        self.synced.set()
        await self._notify("SYNC", None)
        return str(data["metadata"]["resourceVersion"])

    async def run(self) -> None:
        rv: str | None = None
        delay = 0.1
        while True:
            try:
                if rv is None:
                    rv = await self._list()
                watch = Watch()
                method = partial(self.list_method, _preload_content=False)
                async with watch.stream(
                    method,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=self.watch_timeout,
                    **self.selectors,
                ) as stream:
                    async for event in stream:
                        delay = 0.1
                        raw = event["raw_object"]
                        rv = raw["metadata"]["resourceVersion"]
                        if event["type"] == "BOOKMARK":
                            continue
                        if event["type"] == "DELETED":
                            self.items.pop(key_of(raw), None)
                        else:
                            self.items[key_of(raw)] = raw
                        await self._notify(event["type"], raw)
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("watch failed (%s), relisting in %.1fs", exc.status, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                rv = None
            except Exception:
                log.exception("watch failed, relisting in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                rv = None
