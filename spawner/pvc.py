"""The user's home volume in one region: one claim per user and region, never shared across."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from kubespawner.slugs import safe_slug

from sovereign_hub.policy.decision import LABEL_PREFIX

from .transient import retry_transient


def home_claim_name(username: str, region: str) -> str:
    """``home-<user slug>-<region>``: the region is part of the name, so no pod of one
    region can be given another region's volume by name."""
    return f"home-{safe_slug(username, max_length=40)}-{region}"


def make_home_pvc(
    *,
    name: str,
    username: str,
    region: str,
    storage_class: str,
    size: str,
    access_modes: tuple[str, ...] = ("ReadWriteOnce",),
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "labels": {
                **(labels or {}),
                "app.kubernetes.io/component": "singleuser-storage",
                "component": "singleuser-storage",
                "hub.jupyter.org/username": safe_slug(username, max_length=63),
                f"{LABEL_PREFIX}region": region,
            },
            "annotations": {f"{LABEL_PREFIX}username": username},
        },
        "spec": {
            "accessModes": list(access_modes),
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": size}},
        },
    }


async def ensure_claim(
    api: Any, namespace: str, body: dict[str, Any], retry_for: float = 0.0
) -> None:
    """Create the claim ``body`` unless one of its name exists: an existing claim is the
    user's home, and is kept as it is (never resized or replaced). Transient API errors
    are retried for ``retry_for`` seconds (a create that reached the server before the
    connection dropped comes back as 409, which is success here)."""

    async def create() -> None:
        try:
            await api.create_namespaced_persistent_volume_claim(namespace=namespace, body=body)
        except ApiException as exc:
            if exc.status != 409:
                raise

    what = f"creating the home volume {body['metadata']['name']}"
    await retry_transient(create, what=what, timeout=retry_for)
