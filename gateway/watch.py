"""Keep a :class:`~.routes.RouteTable` equal to the pods the API server has.

The API server is the one source of truth: the gateway lists the notebook pods
of its own namespace, then watches from the listing's ``resourceVersion``. A
watch that ends (the server closes watches every few minutes) is resumed from
the last version seen; one that fails (410 Gone, a connection error) is
replaced by a fresh listing after a pause. It needs ``get``, ``list`` and
``watch`` on pods in that namespace, and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubernetes_asyncio import watch
from kubernetes_asyncio.client import CoreV1Api

from .routes import RouteTable

log = logging.getLogger(__name__)

SELECTOR = "component=singleuser-server"
"""KubeSpawner's label on every notebook pod (its ``component_label`` default)."""


class PodFollower:
    """Lists, then watches, the notebook pods of ``namespace`` into ``table``."""

    def __init__(
        self,
        api: CoreV1Api,
        namespace: str,
        table: RouteTable,
        *,
        selector: str = SELECTOR,
        retry_seconds: float = 2.0,
        watch_seconds: int = 300,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.table = table
        self.selector = selector
        self.retry_seconds = retry_seconds
        self.watch_seconds = watch_seconds
        self.synced = asyncio.Event()
        """Set once the first listing is in the table (the gateway's readiness)."""

    def _plain(self, pod: Any) -> dict[str, Any]:
        plain: dict[str, Any] = self.api.api_client.sanitize_for_serialization(pod)
        return plain

    async def _list(self) -> str:
        listing = await self.api.list_namespaced_pod(self.namespace, label_selector=self.selector)
        self.table.replace([self._plain(pod) for pod in listing.items])
        self.synced.set()
        log.info("listed %d routes in namespace %s", len(self.table), self.namespace)
        return str(listing.metadata.resource_version)

    async def _watch(self, version: str) -> str:
        """Follow events from ``version`` until the server ends the watch; the last version."""
        async with watch.Watch() as stream:
            async for event in stream.stream(
                self.api.list_namespaced_pod,
                self.namespace,
                label_selector=self.selector,
                resource_version=version,
                timeout_seconds=self.watch_seconds,
            ):
                kind = event["type"]
                if kind == "ERROR":
                    raise RuntimeError(f"watch error: {event['raw_object'].get('reason')}")
                pod = event["raw_object"]
                self.table.apply(kind, pod)
                version = pod.get("metadata", {}).get("resourceVersion", version)
        return version

    async def run(self) -> None:
        """Follow the pods until cancelled, never giving up."""
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._list()
                version = await self._watch(version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The type says enough; the text of a client error can carry the server's
                # address and headers.
                log.warning(
                    "pods of %s: %s; listing again in %ss",
                    self.namespace,
                    type(exc).__name__,
                    self.retry_seconds,
                )
                version = None
                await asyncio.sleep(self.retry_seconds)
