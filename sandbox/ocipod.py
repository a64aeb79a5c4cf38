"""A rendered pod's container, run from its image with runc as a kubelet would start it.

Given the pod spec of a manifest (a chart's Deployment, say) and the ConfigMaps and Secrets
rendered beside it, this writes the container's volumes as files (configMap and secret keys,
``items`` and ``subPath`` honoured, emptyDir and claim directories owned by the pod's
``fsGroup``), resolves its environment (``value``, ``secretKeyRef``, ``configMapKeyRef``,
``fieldRef``) and projects a service account token where the pod mounts one, then gives
:class:`~sovereign_hub.images.runc.RunOptions` for runc: argv, user, working directory,
read-only root, dropped capabilities and no privilege escalation from the security context.

What a kubelet does and this does not is refused by name (other volume kinds, other
``valueFrom`` sources, added capabilities), so a chart that comes to need one fails here, not
silently. One thing is not applied and says so here: ``seccompProfile: RuntimeDefault`` (the
container runtime's default profile; runc has none of its own to apply).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sovereign_hub.images.runc import RunOptions

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class PodSpecError(ValueError):
    """Something in the pod spec this runner cannot do as a kubelet would; says what."""


@dataclass(frozen=True)
class ServiceAccount:
    """The API server a pod reaches as ``kubernetes.default`` and its token there."""

    host: str
    port: int
    token: str
    ca_pem: bytes
    namespace: str


@dataclass
class Objects:
    """The ConfigMaps' and Secrets' data, by name (Secrets decoded)."""

    configmaps: dict[str, dict[str, bytes]] = field(default_factory=dict)
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)

    @classmethod
    def from_manifests(cls, docs: Iterable[Mapping[str, Any]]) -> Objects:
        objects = cls()
        for doc in docs:
            name = doc.get("metadata", {}).get("name", "")
            if doc.get("kind") == "ConfigMap":
                data = {k: v.encode() for k, v in (doc.get("data") or {}).items()}
                data |= {k: base64.b64decode(v) for k, v in (doc.get("binaryData") or {}).items()}
                objects.configmaps[name] = data
            elif doc.get("kind") == "Secret":
                data = {k: base64.b64decode(v) for k, v in (doc.get("data") or {}).items()}
                data |= {k: v.encode() for k, v in (doc.get("stringData") or {}).items()}
                objects.secrets[name] = data
        return objects


def _source(objects: Objects, kind: str, ref: Mapping[str, Any], where: str) -> dict[str, bytes]:
    store = objects.configmaps if kind == "configMap" else objects.secrets
    name = ref.get("name") or ref.get("secretName", "")
    if name not in store:
        if ref.get("optional"):
            return {}
        raise PodSpecError(f"{where}: {kind} {name!r} was not rendered (and is not optional)")
    return store[name]


def _write(directory: Path, files: Mapping[str, bytes], mode: int) -> None:
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)


def _volume(
    volume: Mapping[str, Any], objects: Objects, root: Path, owner: tuple[int, int]
) -> tuple[Path, bool]:
    """The directory holding ``volume`` and whether the pod may write it."""
    name = volume["name"]
    where = f"volume {name!r}"
    directory = root / "volumes" / name
    directory.mkdir(parents=True, exist_ok=True)
    for kind in ("configMap", "secret"):
        if kind in volume:
            spec = volume[kind]
            data = _source(objects, kind, spec, where)
            items = spec.get("items")
            if items:
                missing = [i["key"] for i in items if i["key"] not in data]
                if missing and data and not spec.get("optional"):
                    raise PodSpecError(f"{where}: no key {', '.join(missing)} in its {kind}")
                files = {i["path"]: data[i["key"]] for i in items if i["key"] in data}
            else:
                files = dict(data)
            _write(directory, files, spec.get("defaultMode", 0o644))
            return directory, False
    if "emptyDir" in volume or "persistentVolumeClaim" in volume:
        # fsGroup: the pod's group owns what it may write.
        os.chown(directory, *owner)
        directory.chmod(0o2775)
        claim = volume.get("persistentVolumeClaim") or {}
        return directory, not claim.get("readOnly", False)
    kinds = sorted(set(volume) - {"name"})
    raise PodSpecError(
        f"{where}: {', '.join(kinds)} volumes are not run here "
        "(configMap, secret, emptyDir and persistentVolumeClaim are)"
    )


def _env(container: Mapping[str, Any], objects: Objects, pod: Mapping[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        name, where = item["name"], f"env {item['name']!r}"
        if "value" in item:
            env[name] = str(item["value"])
            continue
        source = item.get("valueFrom") or {}
        if ref := source.get("secretKeyRef") or source.get("configMapKeyRef"):
            kind = "secret" if "secretKeyRef" in source else "configMap"
            data = _source(objects, kind, ref, where)
            if ref["key"] in data:
                env[name] = data[ref["key"]].decode()
            elif not ref.get("optional"):
                raise PodSpecError(f"{where}: no key {ref['key']!r} in {kind} {ref['name']!r}")
        elif ref := source.get("fieldRef"):
            path = ref["fieldPath"]
            if path not in pod:
                raise PodSpecError(f"{where}: fieldRef {path} is not provided here")
            env[name] = pod[path]
        else:
            raise PodSpecError(f"{where}: valueFrom {sorted(source)} is not provided here")
    return env


def run_options(
    pod_spec: Mapping[str, Any],
    container_name: str,
    objects: Objects,
    root: Path,
    *,
    entrypoint: list[str],
    netns: str | None = None,
    hosts_file: Path | None = None,
    service_account: ServiceAccount | None = None,
    pod_fields: Mapping[str, str] | None = None,
) -> RunOptions:
    """How runc should start ``container_name`` of ``pod_spec``; files are written under
    ``root``. ``entrypoint`` is the image's ENTRYPOINT (used when the container sets only
    ``args``, as Kubernetes does)."""
    container = next((c for c in pod_spec["containers"] if c["name"] == container_name), None)
    if container is None:
        raise PodSpecError(f"no container {container_name!r} in the pod")
    pod_security = pod_spec.get("securityContext") or {}
    security = {**pod_security, **(container.get("securityContext") or {})}
    uid, gid = security.get("runAsUser"), security.get("runAsGroup")
    if uid is None:
        raise PodSpecError("runAsUser is not set: the image's user would decide")
    owner = (int(uid), int(pod_security.get("fsGroup", gid if gid is not None else uid)))
    volumes = {v["name"]: _volume(v, objects, root, owner) for v in pod_spec.get("volumes", [])}
    binds: dict[str, Path] = {}
    writable: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            raise PodSpecError(f"volumeMount {mount['name']!r}: no such volume in the pod")
        directory, may_write = volumes[mount["name"]]
        source = directory / mount["subPath"] if mount.get("subPath") else directory
        target = writable if may_write and not mount.get("readOnly") else binds
        target[mount["mountPath"]] = source
    fields = {"metadata.namespace": service_account.namespace if service_account else "default"}
    env = _env(container, objects, {**fields, **(pod_fields or {})})
    if service_account is not None and pod_spec.get("automountServiceAccountToken", True):
        account = root / "serviceaccount"
        _write(account, {"token": service_account.token.encode(),
                         "ca.crt": service_account.ca_pem,
                         "namespace": service_account.namespace.encode()}, 0o644)  # fmt: skip
        binds[SERVICE_ACCOUNT_DIR] = account
        env.setdefault("KUBERNETES_SERVICE_HOST", service_account.host)
        env.setdefault("KUBERNETES_SERVICE_PORT", str(service_account.port))
    if hosts_file is not None:
        binds["/etc/hosts"] = hosts_file
    # $(VAR) in command and args is the container's variable, as Kubernetes expands it.
    argv = [
        _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), arg)
        for arg in [*(container.get("command") or entrypoint), *(container.get("args") or [])]
    ]
    if not argv:
        raise PodSpecError(f"container {container_name!r}: no command, args or entrypoint")
    capabilities = security.get("capabilities") or {}
    if capabilities.get("add"):
        raise PodSpecError(f"capabilities.add {capabilities['add']} is not granted here")
    if security.get("runAsNonRoot") and int(uid) == 0:
        raise PodSpecError("runAsNonRoot is set but runAsUser is 0: a kubelet would refuse it")
    caps = capabilities.get("drop") or []
    return RunOptions(
        args=tuple(argv),
        env=env,
        uid=int(uid),
        gid=int(gid) if gid is not None else None,
        read_only_root=bool(security.get("readOnlyRootFilesystem")),
        tmpfs=(),
        binds=binds,
        writable=writable,
        cwd=container.get("workingDir"),
        netns=netns,
        drop_all_capabilities="ALL" in caps,
        no_new_privileges=security.get("allowPrivilegeEscalation") is False,
    )
