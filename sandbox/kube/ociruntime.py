"""Pods' containers run from their OCI images with runc (``Cluster(runtime="oci")``).

A kubelet runs what the image gives: its root filesystem, user, environment
and entry point, shaped by the pod spec. Here the images are the OCI layouts
``make images`` writes (``.tools/images/oci/<name>``); a container's image is
found by the digest its reference names, as a node's image store finds a
pulled image, and an image named by tag only, or not in the store, is not
run (``ErrImagePull``, saying which store was searched).

Each image is unpacked once with umoci. Each container gets the image's
root filesystem read-only when its security context asks
(``readOnlyRootFilesystem``), otherwise an overlay with a writable layer of
its own, as a container runtime's snapshotter gives it; its volumes are bind
mounts at their mount paths; it joins the pod's network namespace
(podnet.py), so it has the pod's own address. runc is started in the
foreground: it forwards SIGTERM to the container, and :meth:`OciProcess.stop`
kills and deletes what is left after the grace period.

What is not applied and says so here: cgroup limits and rlimits (these
machines cannot grant them: sovereign_hub/images/runc.py), and seccomp's
RuntimeDefault profile (runc has none of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovereign_hub.images.oci import LayoutError, image_config
from sovereign_hub.images.runc import RuncError, RunOptions, configure, unpack

from .podenv import ConfigError
from .podsetup import Mounts

log = logging.getLogger(__name__)
#: Seconds to wait for runc to report a killed container's exit before deleting it by force.
KILL_WAIT = 10.0

REF_NAME = "org.opencontainers.image.ref.name"
#: Volume sources a kubelet always mounts read-only.
READ_ONLY_VOLUMES = frozenset({"secret", "configMap", "projected", "downwardAPI"})


@dataclass(frozen=True)
class StoredImage:
    """One image of the store: where its layout is, under which tag, and its digest."""

    name: str
    layout: Path
    tag: str
    digest: str


class ImageStore:
    """The images a node has, by manifest digest, read from OCI image layouts."""

    def __init__(self, layouts: Iterable[Path]) -> None:
        self.layouts = [Path(p) for p in layouts]
        self.by_digest: dict[str, StoredImage] = {}
        self.by_name: dict[str, StoredImage] = {}
        for layout in self.layouts:
            try:
                index = json.loads((layout / "index.json").read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"{layout}: not an OCI image layout ({exc})") from None
            for manifest in index.get("manifests") or []:
                tag = (manifest.get("annotations") or {}).get(REF_NAME, "")
                image = StoredImage(layout.name, layout, tag, manifest["digest"])
                self.by_digest[image.digest] = image
                self.by_name.setdefault(layout.name, image)

    @classmethod
    def from_dir(cls, directory: Path) -> ImageStore:
        """Every OCI layout (a folder with an ``oci-layout`` file) directly in ``directory``."""
        if not directory.is_dir():
            raise ValueError(f"{directory}: no such folder of images (build them: make images)")
        layouts = sorted(p for p in directory.iterdir() if (p / "oci-layout").is_file())
        if not layouts:
            raise ValueError(f"{directory}: no OCI image layout in it (build them: make images)")
        return cls(layouts)

    def find(self, image: str) -> StoredImage:
        """The stored image ``image`` (``repo@sha256:…``) names, else ErrImagePull."""
        _, at, digest = image.rpartition("@")
        stored = self.by_digest.get(digest) if at else None
        if stored is None:
            where = ", ".join(str(p) for p in self.layouts) or "none"
            why = "it is in none of this node's image layouts" if at else "it names no digest"
            raise ConfigError(
                "ErrImagePull",
                f'failed to pull image "{image}": {why} ({where}); this kubelet runs only '
                "images built here (make images), found by digest",
            )
        return stored


@dataclass(frozen=True)
class ImageConfig:
    """What an unpacked image says about how to run it."""

    bundle: Path
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    cwd: str


class OciRuntime:
    """Unpacks images once and starts containers from them with runc."""

    def __init__(self, store: ImageStore, cache_dir: Path) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self._locks: dict[str, asyncio.Lock] = {}

    async def image(self, stored: StoredImage) -> ImageConfig:
        """The image unpacked (once per digest) and its run configuration."""
        bundle = self.cache_dir / stored.digest.replace(":", "-")
        async with self._locks.setdefault(stored.digest, asyncio.Lock()):
            if not (bundle / "config.json").is_file():
                partial = bundle.with_name(bundle.name + ".partial")
                await asyncio.to_thread(_unpack, stored, partial)
                partial.rename(bundle)
        config = json.loads((bundle / "config.json").read_text())
        process = config["process"]
        # umoci joins ENTRYPOINT and CMD in process.args; the image's own configuration
        # keeps them apart, as Kubernetes' command/args rules need them.
        try:
            own = image_config(stored.layout, stored.tag).get("config") or {}
        except (LayoutError, OSError, ValueError) as exc:
            raise ConfigError("ErrImagePull", f"reading {stored.name}: {exc}") from None
        env = dict(item.split("=", 1) for item in process.get("env") or [])
        return ImageConfig(
            bundle=bundle,
            entrypoint=list(own.get("Entrypoint") or []),
            cmd=list(own.get("Cmd") or []),
            env=env,
            cwd=process.get("cwd") or "/",
        )

    async def start(
        self,
        *,
        image: ImageConfig,
        pod: Mapping[str, Any],
        container: Mapping[str, Any],
        argv: list[str],
        env: dict[str, str],
        mounts: Mounts,
        pod_root: Path,
        netns: str,
        log_path: Path,
    ) -> OciProcess:
        """Start the container in the pod's network namespace; its output goes to ``log_path``."""
        spec = pod["spec"]
        pod_security = spec.get("securityContext") or {}
        security = {**pod_security, **(container.get("securityContext") or {})}
        base = json.loads((image.bundle / "config.json").read_text())
        user = base["process"].get("user") or {}
        uid = int(security.get("runAsUser", user.get("uid", 0)))
        gid = int(security.get("runAsGroup", user.get("gid", 0)))
        if security.get("runAsNonRoot") and uid == 0:
            raise ConfigError(
                "CreateContainerConfigError",
                "container has runAsNonRoot and image will run as root",
            )
        if (security.get("capabilities") or {}).get("add"):
            raise ConfigError(
                "CreateContainerError",
                f"capabilities.add {security['capabilities']['add']} are not granted here",
            )
        # What this runtime cannot give is refused by name, never silently run without.
        ungranted = [k for k in ("privileged",) if security.get(k)] + [
            k for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)
        ]
        if ungranted:
            raise ConfigError(
                "CreateContainerError", f"{', '.join(ungranted)}: not granted by this kubelet"
            )
        fs_group = pod_security.get("fsGroup")
        binds, writable, empty_dirs = split_mounts(spec, container, mounts)
        for path, host in writable.items():
            _own(host, fs_group, empty_dir=path in empty_dirs)
        caps = (security.get("capabilities") or {}).get("drop") or []
        options = RunOptions(
            args=tuple(argv),
            env={**image.env, **env},
            uid=uid,
            gid=gid,
            additional_gids=(int(fs_group),) if fs_group is not None else (),
            read_only_root=bool(security.get("readOnlyRootFilesystem")),
            tmpfs=(),
            binds=binds,
            writable=writable,
            cwd=container.get("workingDir") or image.cwd,
            netns=f"/var/run/netns/{netns}",
            drop_all_capabilities="ALL" in caps,
            no_new_privileges=security.get("allowPrivilegeEscalation") is False,
        )
        runtime = configure(base, options)
        container_id = f"shk-{uuid.uuid4().hex[:16]}"
        # A bundle (and writable layer) per container instance: a restarted container starts
        # from the image again, as on a node, not from what the last instance wrote.
        bundle = pod_root / "containers" / container_id
        bundle.mkdir(parents=True)
        rootfs = image.bundle / "rootfs"
        overlay: Path | None = None
        try:
            if not options.read_only_root:
                # A writable layer of the container's own over the shared image.
                overlay = bundle / "rootfs"
                for part in ("upper", "work", "rootfs"):
                    (bundle / part).mkdir(exist_ok=True)
                await asyncio.to_thread(_mount_overlay, rootfs, bundle, overlay)
                rootfs = overlay
            runtime["root"]["path"] = str(rootfs)
            (bundle / "config.json").write_text(json.dumps(runtime))
            with open(log_path, "ab") as logfile:
                process = await asyncio.create_subprocess_exec(
                    "runc", "run", "--bundle", str(bundle), container_id,
                    stdout=logfile, stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
        except BaseException:
            # Nothing of a container that never started is left: no mount, no bundle.
            if overlay is not None:
                _unmount(overlay)
            if overlay is None or not os.path.ismount(overlay):
                shutil.rmtree(bundle, ignore_errors=True)
            raise
        return OciProcess(process, container_id, bundle, overlay)


class OciProcess:
    """A container runc runs in the foreground; looks like a process to the kubelet."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        container_id: str,
        bundle: Path,
        overlay: Path | None,
    ) -> None:
        self.process = process
        self.id = container_id
        self.bundle = bundle
        self.overlay = overlay

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def wait(self) -> int:
        code = await self.process.wait()
        await asyncio.to_thread(self._clean)
        return code

    async def stop(self, grace: float) -> int:
        """SIGTERM to the container, SIGKILL after ``grace`` seconds, then delete it."""
        await _runc("kill", self.id, "TERM")
        try:
            async with asyncio.timeout(max(grace, 0.1)):
                return await self.wait()
        except TimeoutError:
            await _runc("kill", "--all", self.id, "KILL")
        try:
            async with asyncio.timeout(KILL_WAIT):
                return await self.wait()
        except TimeoutError:
            # runc itself is stuck: delete the container by force rather than hang the kubelet.
            log.warning(
                "container %s: no exit %.0f s after SIGKILL; deleting it", self.id, KILL_WAIT
            )
            await _runc("delete", "--force", self.id)
            self.process.kill()
            return await self.wait()

    def _clean(self) -> None:
        subprocess.run(["runc", "delete", "--force", self.id], capture_output=True, check=False)
        overlay, self.overlay = self.overlay, None
        if overlay is not None:
            _unmount(overlay)
        if not os.path.ismount(self.bundle / "rootfs"):
            shutil.rmtree(self.bundle, ignore_errors=True)

    def exec_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run in this container (``pods/exec``): its namespaces, user and env."""
        return ["runc", "exec", self.id, *argv]


def split_mounts(
    spec: Mapping[str, Any], container: Mapping[str, Any], mounts: Mounts
) -> tuple[dict[str, Path], dict[str, Path], set[str]]:
    """The container's mounts as (read-only, writable) bind mounts, by mount path, and the
    mount paths of its emptyDir volumes. Secret, ConfigMap, projected and downward API
    volumes are read-only whatever the mount says, as a kubelet mounts them; others as the
    mount's ``readOnly`` says."""
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    declared = {m["mountPath"]: m for m in container.get("volumeMounts") or []}
    binds: dict[str, Path] = {}
    writable: dict[str, Path] = {}
    empty_dirs: set[str] = set()
    for path, host in mounts:
        volume = volumes.get(declared[path]["name"], {})
        read_only = READ_ONLY_VOLUMES & volume.keys() or declared[path].get("readOnly")
        (binds if read_only else writable)[path] = host
        if "emptyDir" in volume:
            empty_dirs.add(path)
    return binds, writable, empty_dirs


def command_line(container: Mapping[str, Any], image: ImageConfig) -> list[str]:
    """The container's command line by Kubernetes' rules: ``command`` replaces the image's
    ENTRYPOINT (and drops its CMD); ``args`` replace its CMD."""
    if container.get("command"):
        return [*container["command"], *(container.get("args") or [])]
    return [*image.entrypoint, *(container.get("args") or image.cmd)]


def _unpack(stored: StoredImage, bundle: Path) -> None:
    if bundle.exists():
        shutil.rmtree(bundle)
    try:
        unpack(stored.layout, stored.tag, bundle)
    except RuncError as exc:
        raise ConfigError("ErrImagePull", f"unpacking {stored.name}: {exc}") from None


def _mount_overlay(lower: Path, bundle: Path, target: Path) -> None:
    options = f"lowerdir={lower},upperdir={bundle / 'upper'},workdir={bundle / 'work'}"
    done = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(target)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise ConfigError("CreateContainerError", f"overlay root: {done.stderr.strip()}")


def _unmount(target: Path) -> None:
    done = subprocess.run(["umount", str(target)], capture_output=True, text=True, check=False)
    if done.returncode != 0 and os.path.ismount(target):
        log.warning("cannot unmount %s: %s", target, done.stderr.strip())


def _own(directory: Path, fs_group: int | None, *, empty_dir: bool) -> None:
    """A writable volume as a kubelet leaves it: an emptyDir open to all (0777); with an
    ``fsGroup``, everything in it owned by that group, group-writable, set-gid directories."""
    if empty_dir:
        directory.chmod(0o777)
    if fs_group is None:
        return
    for path in [directory, *directory.rglob("*")]:
        with contextlib.suppress(FileNotFoundError):
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                continue
            os.chown(path, -1, fs_group)
            mode = stat.S_IMODE(info.st_mode) | stat.S_IRGRP | stat.S_IWGRP
            if stat.S_ISDIR(info.st_mode):
                mode |= stat.S_IXGRP | stat.S_ISGID
            path.chmod(mode)


async def _runc(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "runc", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    await proc.wait()
