"""Recording core/v1 Events about an object, as the scheduler and the kubelet do."""

from __future__ import annotations

import logging
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from . import rawapi
from .store import now_iso

log = logging.getLogger(__name__)


class EventRecorder:
    """Writes Events from ``component``."""

    def __init__(
        self, core: client.CoreV1Api, component: str, *, host_is_node: bool = False
    ) -> None:
        self.core = core
        self.component = component
        self.host_is_node = host_is_node
        """A kubelet's events name the node the pod runs on as their source host."""

    async def record(
        self,
        obj: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        *,
        field_path: str = "",
    ) -> str:
        """Create the Event; returns its name ("" if it could not be written)."""
        meta = obj["metadata"]
        stamp = now_iso()
        host = obj.get("spec", {}).get("nodeName", "") if self.host_is_node else ""
        involved = {
            "apiVersion": obj.get("apiVersion", "v1"),
            "kind": obj.get("kind", "Pod"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta.get("resourceVersion"),
        }
        if field_path:
            involved["fieldPath"] = field_path
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component, **({"host": host} if host else {})},
            "reportingComponent": self.component,
            "reportingInstance": host,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            event = await rawapi.call(self.core.create_namespaced_event, meta["namespace"], body)
            return str(event["metadata"]["name"])
        except ApiException as exc:
            log.warning(
                "could not record event for %s/%s: %s", meta["namespace"], meta["name"], exc.status
            )
            return ""
