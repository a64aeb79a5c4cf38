"""What a container is given before its process starts: mounts, environment, command line.

A process cannot have mounts or a network namespace of its own, so the kubelet
gives it both by translation: each ``volumeMount`` is a directory on this host
(a PersistentVolumeClaim's under ``claims/<ns>/<claim>``, shared by every pod
that mounts the claim; any other volume's under the pod's own folder, with a
Secret's or ConfigMap's keys written into it as files), and :func:`translate`
rewrites the mount paths in arguments and environment to those directories.
Without a pod network, the wildcard address ``0.0.0.0`` becomes the pod's own
loopback address. Secret and ConfigMap data is read from the API server by
:class:`ObjectData`; a missing one fails the container unless optional.
:func:`prepare` puts it together with the environment rules of podenv.py.
Images are not pulled: a container with no ``command`` runs its ``args``
directly (what the Jupyter images' entrypoints do) unless ``entrypoints``
maps its image to a command.
"""

from __future__ import annotations

import base64
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from . import rawapi
from .podenv import ConfigError, container_env, expand

Mounts = list[tuple[str, Path]]
"""``(mountPath, host directory)``, longest mount path first."""


class ObjectData:
    """Reads the ``data`` of Secrets and ConfigMaps, decoded to bytes."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core

    async def read(self, kind: str, ns: str, name: str, optional: bool) -> dict[str, bytes]:
        """A :data:`podenv.Reader`: kind "secret" or "configmap"."""
        reader = self.secret if kind == "secret" else self.configmap
        return await reader(ns, name, optional)

    async def secret(self, ns: str, name: str, optional: bool = False) -> dict[str, bytes]:
        data = await self._data(self.core.read_namespaced_secret, "secret", ns, name, optional)
        return {k: base64.b64decode(v) for k, v in data.items()}

    async def configmap(self, ns: str, name: str, optional: bool = False) -> dict[str, bytes]:
        data = await self._data(
            self.core.read_namespaced_config_map, "configmap", ns, name, optional
        )
        return {k: v.encode() for k, v in data.items()}

    async def _data(
        self, read: Any, kind: str, ns: str, name: str, optional: bool
    ) -> dict[str, str]:
        """The ``data`` of a Secret or ConfigMap; missing fails the container unless optional."""
        try:
            obj = await rawapi.call(read, name, ns)
        except ApiException as exc:
            if exc.status == 404 and optional:
                return {}
            raise ConfigError("CreateContainerConfigError", f'{kind} "{name}" not found') from None
        return dict(obj.get("data") or {})


async def mount_volumes(
    pod: dict[str, Any],
    container: dict[str, Any],
    *,
    pod_root: Path,
    claims_dir: Path,
    data: ObjectData,
) -> Mounts:
    """Create the host directory behind each of ``container``'s volume mounts."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    ns = pod["metadata"]["namespace"]
    mounts: Mounts = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise ConfigError(
                "CreateContainerConfigError",
                f'volume "{mount["name"]}" is not defined in the pod',
            )
        if claim := (volume.get("persistentVolumeClaim") or {}).get("claimName"):
            host = claims_dir / ns / claim
        else:
            host = pod_root / "volumes" / mount["name"]
        host.mkdir(parents=True, exist_ok=True)
        for kind, reader in (("secret", data.secret), ("configMap", data.configmap)):
            if source := volume.get(kind):
                name = source.get("secretName") or source.get("name")
                for key, value in (
                    await reader(ns, name, optional=bool(source.get("optional")))
                ).items():
                    (host / key).write_bytes(value)
        if sub := mount.get("subPath"):
            # A subPath that names a file (a ConfigMap key, say) is mounted as that
            # file; one that does not exist yet is created as a directory.
            host = host / sub
            if not host.exists():
                host.mkdir(parents=True)
        mounts.append((mount["mountPath"], host))
    mounts.sort(key=lambda m: len(m[0]), reverse=True)
    return mounts


def translate(value: str, *, ip: str, mounts: Mounts, isolated: bool) -> str:
    """``value`` (an argument, an environment value, a path) as the process must see it."""
    if not isolated:  # a loopback address stands in for the pod's namespace
        value = value.replace("0.0.0.0", ip)  # noqa: S104
    for mount_path, host in mounts:
        pattern = re.compile(rf"(^|=){re.escape(mount_path.rstrip('/'))}(?=/|$)")
        value = pattern.sub(lambda m, h=host: m.group(1) + str(h), value)
    return value


@dataclass(frozen=True)
class Launch:
    """How to start a container's process."""

    argv: list[str]
    """The command line, its executable resolved on the container's ``PATH``."""
    env: dict[str, str]
    cwd: str
    mounts: Mounts


async def prepare(
    pod: dict[str, Any],
    container: dict[str, Any],
    *,
    ip: str,
    pod_root: Path,
    claims_dir: Path,
    base_env: dict[str, str],
    entrypoints: dict[str, list[str]],
    isolated: bool,
    data: ObjectData,
) -> Launch:
    """Mount the volumes and work out the process: raises :class:`ConfigError` with the reason
    a kubelet gives when the container cannot be created as configured."""
    mounts = await mount_volumes(
        pod, container, pod_root=pod_root, claims_dir=claims_dir, data=data
    )

    def local(value: str) -> str:
        return translate(value, ip=ip, mounts=mounts, isolated=isolated)

    env = dict(base_env)
    env["HOSTNAME"] = pod["metadata"]["name"]
    env.update(await container_env(pod, container, ip, data.read))
    env = {k: local(v) for k, v in env.items()}
    command = container.get("command") or entrypoints.get(container.get("image", ""), [])
    argv = [local(expand(a, env)) for a in [*command, *container.get("args", [])]]
    if not argv:
        raise ConfigError(
            "CreateContainerConfigError",
            f"no command to run: image {container.get('image')!r} has no known entrypoint "
            "and the container sets neither command nor args",
        )
    resolved = shutil.which(argv[0], path=env.get("PATH"))
    if resolved is None:
        raise ConfigError("CreateContainerError", f'executable "{argv[0]}" not found in $PATH')
    argv[0] = resolved
    cwd = local(container["workingDir"]) if container.get("workingDir") else str(pod_root)
    Path(cwd).mkdir(parents=True, exist_ok=True)
    env.setdefault("HOME", cwd)
    return Launch(argv=argv, env=env, cwd=cwd, mounts=mounts)
