"""The Kubernetes *restricted* Pod Security Standard: secure defaults and a checker.

The checker reads the fields the standard names (not strings), so it can
judge any pod spec: the spawner's before it creates a pod, and the chart's.
:class:`RestrictedPods` gives a KubeSpawner subclass the defaults and the check.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio.client import ApiClient
from traitlets import Bool, default
from traitlets.config import Configurable

from sovereign_hub.refusals import SpawnRefused

# KubeSpawner trait defaults that make every user pod restricted.
RESTRICTED_DEFAULTS: dict[str, Any] = {
    "uid": 1000,
    "gid": 100,
    "fs_gid": 100,
    "privileged": False,
    "allow_privilege_escalation": False,
    "automount_service_account_token": False,
    "pod_security_context": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "container_security_context": {
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}

_ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
_SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def restricted_violations(pod_spec: Mapping[str, Any], where: str = "spec") -> list[str]:
    """Every way ``pod_spec`` (a PodSpec as a dict) breaks the restricted standard."""
    out: list[str] = []
    psc = pod_spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag):
            out.append(f"{where}.{flag} must not be true")
    for i, volume in enumerate(pod_spec.get("volumes") or []):
        kinds = set(volume) - {"name"}
        if not kinds <= _ALLOWED_VOLUMES:
            out.append(
                f"{where}.volumes[{i}] ({volume.get('name')}) uses "
                f"{', '.join(sorted(kinds - _ALLOWED_VOLUMES))}"
            )
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            out.append(
                f"{where}.securityContext.sysctls: {sysctl.get('name')} is not a safe sysctl"
            )
    if psc.get("runAsUser") == 0:
        out.append(f"{where}.securityContext.runAsUser must not be 0")
    pod_non_root = psc.get("runAsNonRoot") is True
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        out.append(
            f"{where}.securityContext.seccompProfile.type must be RuntimeDefault or Localhost"
        )
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(pod_spec.get(group) or []):
            here = f"{where}.{group}[{i}] ({container.get('name')})"
            csc = container.get("securityContext") or {}
            if csc.get("privileged"):
                out.append(f"{here}.securityContext.privileged must not be true")
            if csc.get("allowPrivilegeEscalation") is not False:
                out.append(f"{here}.securityContext.allowPrivilegeEscalation must be false")
            caps = csc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                out.append(f"{here}.securityContext.capabilities.drop must include ALL")
            extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
            if extra:
                out.append(
                    f"{here}.securityContext.capabilities.add may only hold NET_BIND_SERVICE, "
                    f"not {', '.join(sorted(extra))}"
                )
            non_root = csc.get(
                "runAsNonRoot", pod_non_root if csc.get("runAsNonRoot") is None else False
            )
            if non_root is not True:
                out.append(f"{here}.securityContext.runAsNonRoot must be true (here or on the pod)")
            if csc.get("runAsUser") == 0:
                out.append(f"{here}.securityContext.runAsUser must not be 0")
            seccomp = (csc.get("seccompProfile") or {}).get("type") or pod_seccomp
            if seccomp not in ("RuntimeDefault", "Localhost"):
                out.append(
                    f"{here}.securityContext.seccompProfile.type must be RuntimeDefault or "
                    "Localhost (here or on the pod)"
                )
            if csc.get("procMount") not in (None, "Default"):
                out.append(f"{here}.securityContext.procMount must be Default")
            for port in container.get("ports") or []:
                if port.get("hostPort"):
                    out.append(f"{here}.ports: hostPort {port['hostPort']} is not allowed")
    return out


def _as_dict(value: Any) -> Any:
    # KubeSpawner leaves some parts (security contexts) as the dicts it was given.
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, list):
        return [_as_dict(item) for item in value]
    return manifest_dict(value)


def _volume_kinds(volume: Any) -> dict[str, Any]:
    if isinstance(volume, Mapping):
        return dict(volume)
    # A client model keeps each field as "_<attribute>"; reading the instance's own
    # values spares a getattr for each of the thirty-odd volume sources.
    names = volume.attribute_map
    fields = (k[1:] for k, v in vars(volume).items() if v is not None)
    kinds = {names[f]: True for f in fields if f in names}
    return {**kinds, "name": volume.name}


def _ports(ports: Any) -> list[dict[str, Any]]:
    return [
        {"hostPort": p.get("hostPort") if isinstance(p, Mapping) else p.host_port}
        for p in ports or []
    ]


def security_view(pod: Any) -> dict[str, Any]:
    """The parts of a pod (client model or dict) the standard judges, as a PodSpec dict.

    Only these are converted: environment, resources and affinity, the bulk of
    a pod, are never looked at, which keeps the check cheap on every spawn.
    """
    if isinstance(pod, Mapping):
        return dict(pod.get("spec") or {})
    spec = pod.spec
    view: dict[str, Any] = {
        "securityContext": _as_dict(spec.security_context) or {},
        "hostNetwork": spec.host_network,
        "hostPID": spec.host_pid,
        "hostIPC": spec.host_ipc,
        "volumes": [_volume_kinds(v) for v in spec.volumes or []],
    }
    groups = (
        ("initContainers", "init_containers"),
        ("containers", "containers"),
        ("ephemeralContainers", "ephemeral_containers"),
    )
    for group, attr in groups:
        view[group] = [
            {
                "name": c["name"] if isinstance(c, Mapping) else c.name,
                "securityContext": _as_dict(
                    c.get("securityContext") if isinstance(c, Mapping) else c.security_context
                )
                or {},
                "ports": _ports(c.get("ports") if isinstance(c, Mapping) else c.ports),
            }
            for c in getattr(spec, attr, None) or []
        ]
    return view


def manifest_dict(model: Any) -> Any:
    """A Kubernetes client model as the API's camelCase dict.

    Serialising needs no connection, but ``ApiClient()`` insists on an event
    loop; an instance without ``__init__`` has all serialisation needs.
    """
    return ApiClient.__new__(ApiClient).sanitize_for_serialization(model)


class RestrictedPods(Configurable):
    """For a KubeSpawner subclass: restricted defaults, and the last look at each pod.

    The defaults make every user pod meet the standard with no admin setting
    (non-root uid, no privilege escalation, all capabilities dropped,
    RuntimeDefault seccomp, no API token mounted). The check runs as
    KubeSpawner's ``modify_pod_hook``, after the admin's own hook, so it sees
    the pod exactly as it will be created; call :meth:`install_restricted_hook`
    once, from ``__init__``.
    """

    enforce_restricted = Bool(
        True,
        config=True,
        help="""Refuse to create a user pod that breaks the Kubernetes restricted Pod Security
        Standard (for example because extra config made it privileged). Off only for debugging.""",
    )

    @default("uid")
    def _default_uid(self) -> int:
        return int(RESTRICTED_DEFAULTS["uid"])

    @default("gid")
    def _default_gid(self) -> int:
        return int(RESTRICTED_DEFAULTS["gid"])

    @default("fs_gid")
    def _default_fs_gid(self) -> int:
        return int(RESTRICTED_DEFAULTS["fs_gid"])

    @default("allow_privilege_escalation")
    def _default_ape(self) -> bool:
        return False

    @default("automount_service_account_token")
    def _default_automount(self) -> bool:
        return False

    @default("pod_security_context")
    def _default_psc(self) -> dict[str, Any]:
        return copy.deepcopy(RESTRICTED_DEFAULTS["pod_security_context"])

    @default("container_security_context")
    def _default_csc(self) -> dict[str, Any]:
        return copy.deepcopy(RESTRICTED_DEFAULTS["container_security_context"])

    def install_restricted_hook(self) -> None:
        """Wrap the admin's ``modify_pod_hook`` (if any) with the restricted check."""
        self._admin_pod_hook = getattr(self, "modify_pod_hook", None)
        self.modify_pod_hook = self._restricted_pod_hook

    def _restricted_pod_hook(self, spawner: Any, pod: Any) -> Any:
        """The admin's hook, then the check.

        Synchronous unless the admin's hook is not: KubeSpawner awaits the hook through
        ``maybe_future``, which would otherwise schedule a task for every spawn.
        """
        if self._admin_pod_hook is not None:
            pod = self._admin_pod_hook(spawner, pod)
            if inspect.isawaitable(pod):
                return self._check_when_ready(pod)
        return self._check_restricted(pod)

    async def _check_when_ready(self, pending: Any) -> Any:
        return self._check_restricted(await pending)

    def _check_restricted(self, pod: Any) -> Any:
        if self.enforce_restricted:
            problems = restricted_violations(security_view(pod))
            if problems:
                raise SpawnRefused(
                    500,
                    "Refusing to create a pod that breaks the restricted Pod Security Standard: "
                    + "; ".join(problems),
                )
        return pod
