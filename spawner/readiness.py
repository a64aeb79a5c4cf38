"""A readiness probe on each user pod, so a running container is not taken for a ready server.

KubeSpawner waits (within ``start_timeout``) until every container of the pod
reports ready. With no probe, a container is ready as soon as its process runs,
and the hub then gives the server only ``http_timeout`` to answer: on a busy
node a slow JupyterLab misses that window and the spawn fails although it would
have come up. With the probe on the server's own ``/api`` endpoint, the kubelet
marks the container ready only once the server answers, so the spawn waits for
it within ``start_timeout``; the kubelet's ``Unhealthy`` events show in the
spawn's progress, and the hub's ``http_timeout`` only covers the last hop.

:func:`readiness_probe` is the pure builder; :class:`ReadinessProbing` adds it
to the pod KubeSpawner builds, before the admin's ``modify_pod_hook`` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubernetes_asyncio.client import V1Probe
from kubespawner.utils import get_k8s_model
from traitlets import Bool, Float
from traitlets.config import Configurable


def readiness_probe(*, path: str, port: int, https: bool, period_seconds: float) -> dict[str, Any]:
    """The probe, as the Pod API spells it, on ``path`` at ``port`` of the pod's own address.

    With internal TLS the single-user server requires a client certificate, which a kubelet's
    HTTPS probe never presents: the probe then only checks that the port accepts connections.
    A starting server stays unready until its first success; once ready, three failures in a
    row (each allowed 3 s) take it out, so a server busy for a moment is not dropped.
    """
    check: dict[str, Any] = (
        {"tcpSocket": {"port": port}}
        if https
        else {"httpGet": {"path": path, "port": port, "scheme": "HTTP"}}
    )
    return {
        **check,
        "periodSeconds": max(1, round(period_seconds)),
        "timeoutSeconds": 3,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


class ReadinessProbing(Configurable):
    """For a KubeSpawner subclass: a readiness probe on the notebook container."""

    if TYPE_CHECKING:
        # What it uses of the KubeSpawner it is mixed into.
        port: int
        internal_ssl: bool

    readiness_probe = Bool(
        True,
        config=True,
        help="""Give each user pod a readiness probe on the single-user server's own
        ``<base_url>api`` endpoint, so the spawn waits (within ``start_timeout``) until the
        server answers, not only until its process runs. Default on. Off restores stock
        KubeSpawner behaviour: the hub then allows only ``http_timeout`` for a running server to
        answer. A probe the admin sets through ``extra_container_config`` is kept as given.""",
    )

    readiness_probe_period = Float(
        2.0,
        config=True,
        help="""Seconds between two readiness checks of a starting server (rounded, at least 1).
        Default 2: a server is seen ready at most this long after it first answers.""",
    )

    async def get_pod_manifest(self) -> Any:
        # KubeSpawner's, after this mixin in the spawner's MRO (untyped).
        pod = await super().get_pod_manifest()  # type: ignore[misc]
        container = pod.spec.containers[0]
        # No server (a manifest built outside a spawn): no endpoint to probe.
        server = getattr(self, "server", None)
        if self.readiness_probe and container.readiness_probe is None and server is not None:
            probe = readiness_probe(
                path=f"{server.base_url}api",
                port=self.port,
                https=bool(self.internal_ssl),
                period_seconds=self.readiness_probe_period,
            )
            # KubeSpawner's own helper maps the API's camelCase onto the model,
            # as it does for extra_container_config.
            container.readiness_probe = get_k8s_model(V1Probe, probe)
        return pod
