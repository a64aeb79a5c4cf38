"""One pod's container through its life, as a local process.

The container is "pulled" (the events only: the process runs from this
machine), prepared (podsetup.py), started in a session of its own with its
output appended to the instance's log (podlogs.py), probed for readiness
(probes.py), and, when it exits, restarted with a doubling back-off or
reported finished according to the pod's ``restartPolicy``, with its exit
code. Killing it sends SIGTERM to its process group, SIGKILL after the grace
period. In light mode (lightpod.py) the container is a minimal single-user
server inside this process. Every step is reported in the pod's status and
Events (podstatus.py). Init containers and second containers are not run;
such pods are reported with a clear ``CreateContainerError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .lightpod import LightServer
from .ociruntime import ImageConfig, OciProcess, OciRuntime, command_line
from .podenv import ConfigError, container_env, expand
from .podlogs import instance_log
from .podnet import PodNetwork
from .podsetup import ObjectData, mount_volumes, prepare
from .podstatus import StatusReporter, exit_code, pod_status, terminated_state
from .probes import watch_readiness
from .store import now_iso

BACKOFF_START, BACKOFF_MAX = 1.0, 30.0


@dataclass
class PodRuntime:
    """What the kubelet keeps about one pod it runs."""

    uid: str
    namespace: str
    name: str
    ip: str
    root: Path
    log_dir: Path
    """This pod's logs: ``<container>/<restartCount>.log``, one file per container instance."""
    container: str = ""
    process: asyncio.subprocess.Process | LightServer | OciProcess | None = None
    supervisor: asyncio.Task[None] | None = None
    terminator: asyncio.Task[None] | None = None
    terminating: bool = False
    restarts: int = 0
    started_at: str = field(default_factory=now_iso)
    container_started: str | None = None
    """When the current container instance started (its ``startedAt``)."""
    mounts: list[tuple[str, Path]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""


class ContainerRunner:
    """Runs pods' containers for a kubelet; the kubelet decides which and when."""

    def __init__(
        self,
        *,
        status: StatusReporter,
        network: PodNetwork,
        data: ObjectData,
        claims_dir: Path,
        entrypoints: dict[str, list[str]],
        base_env: dict[str, str],
        light: bool,
        oci: OciRuntime | None = None,
    ) -> None:
        self.status = status
        self.network = network
        self.data = data
        self.claims_dir = claims_dir
        # The kubelet's own dicts, not copies: an entry added to them later counts.
        self.entrypoints = entrypoints
        self.base_env = base_env
        # Light mode (lightpod.py): each pod is a minimal single-user server in
        # this process, for load tests; no process is started.
        self.light = light
        # With an OCI runtime (ociruntime.py) each container runs from its image with runc,
        # in its pod's network namespace.
        self.oci = oci
        self._light_session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._light_session is not None:
            await self._light_session.close()
            self._light_session = None

    async def supervise(self, rt: PodRuntime, pod: dict[str, Any]) -> None:
        spec = pod["spec"]
        container = spec["containers"][0]
        field_path = f"spec.containers{{{container['name']}}}"
        try:
            if len(spec["containers"]) > 1 or spec.get("initContainers"):
                raise ConfigError(
                    "CreateContainerError",
                    "the process kubelet runs exactly one container per pod and no init containers",
                )
            image = await self._pull(pod, container, field_path)
            if image is not None:
                argv, env, cwd = await self._prepare_image(rt, pod, container, image)
            else:
                argv, env, cwd = await self._prepare(rt, pod, container)
            rt.env, rt.cwd = env, cwd
        except (ConfigError, OSError) as exc:
            # A kubelet that cannot start a container says why, in its status and an event.
            reason = exc.reason if isinstance(exc, ConfigError) else "CreateContainerConfigError"
            message = str(exc) if isinstance(exc, ConfigError) else f"{exc.strerror}: {exc}"
            await self.patch_status(
                rt,
                pod,
                "Pending",
                {"waiting": {"reason": reason, "message": message}},
                ready=False,
            )
            await self.event(pod, "Warning", "Failed", f"Error: {message}", field_path=field_path)
            return
        policy = spec.get("restartPolicy", "Always")
        backoff = BACKOFF_START
        while not rt.terminating:
            log_path = instance_log(rt.log_dir, rt.container, rt.restarts)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            if self.light:
                rt.process = await self._start_light(rt, env, log_path)
            elif image is not None:
                rt.process = await self._start_image(rt, pod, container, image, argv, env, log_path)
                if rt.process is None:
                    return
            else:
                rt.process = await self._start_process(rt, pod, argv, env, cwd, log_path)
                if rt.process is None:
                    return
            started = rt.container_started = now_iso()
            await self.event(
                pod,
                "Normal",
                "Created",
                f"Created container: {rt.container}",
                field_path=field_path,
            )
            await self.event(
                pod, "Normal", "Started", f"Started container {rt.container}", field_path=field_path
            )
            probe = container.get("readinessProbe")
            await self.patch_status(
                rt, pod, "Running", {"running": {"startedAt": started}}, ready=probe is None
            )
            prober = (
                asyncio.create_task(self._probe(rt, pod, container, probe, started))
                if probe
                else None
            )
            try:
                code = exit_code(await rt.process.wait())
            finally:
                # Also when this supervisor is cancelled (the kubelet shutting down): a probe
                # left running would report to an API client that is closed by then.
                if prober:
                    prober.cancel()
            if rt.terminating:
                return
            terminated = terminated_state(code, started, rt.process.pid)
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                phase = "Succeeded" if code == 0 else "Failed"
                await self.patch_status(rt, pod, phase, {"terminated": terminated}, ready=False)
                return
            rt.restarts += 1
            await self.patch_status(
                rt,
                pod,
                "Running",
                {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {backoff:.0f}s restarting failed container",
                    }
                },
                ready=False,
                last_state={"terminated": terminated},
            )
            await self.event(
                pod,
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {rt.container} in pod "
                f"{rt.name}_{rt.namespace}({rt.uid})",
                field_path=field_path,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _start_process(
        self,
        rt: PodRuntime,
        pod: dict[str, Any],
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        log_path: Path,
    ) -> asyncio.subprocess.Process | None:
        """The container's process, or None (reported) when it cannot start."""
        field_path = f"spec.containers{{{rt.container}}}"
        argv = self.network.wrap(rt.uid, argv)
        with open(log_path, "ab") as logfile:
            try:
                return await asyncio.create_subprocess_exec(
                    *argv,
                    env=env,
                    cwd=cwd,
                    stdout=logfile,
                    stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as exc:
                message = f"cannot start {argv[0]!r}: {exc.strerror}"
                await self.patch_status(
                    rt,
                    pod,
                    "Pending",
                    {"waiting": {"reason": "RunContainerError", "message": message}},
                    ready=False,
                )
                await self.event(
                    pod, "Warning", "Failed", f"Error: {message}", field_path=field_path
                )
                return None

    async def _start_light(
        self, rt: PodRuntime, env: dict[str, str], log_path: Path
    ) -> LightServer:
        if self._light_session is None:
            self._light_session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=30),
                connector=aiohttp.TCPConnector(limit=64),
            )
        server = LightServer(env, rt.ip, self._light_session)
        if failure := await server.start():  # it has exited 1: the container's log says why
            with open(log_path, "a") as log:
                log.write(failure + "\n")
        return server

    async def _pull(
        self, pod: dict[str, Any], container: dict[str, Any], field_path: str
    ) -> ImageConfig | None:
        """The events a kubelet gives for the container's pull policy. Without an OCI runtime
        nothing is pulled (the process runs from this machine: None); with one the image is
        found in its store by digest (ErrImagePull when it is not there) and unpacked."""
        image = container.get("image", "")
        unpacked = None
        if self.oci is not None:
            unpacked = await self.oci.image(self.oci.store.find(image))
        if container.get("imagePullPolicy") == "Always":
            await self.event(
                pod, "Normal", "Pulling", f'Pulling image "{image}"', field_path=field_path
            )
            message = f'Successfully pulled image "{image}" in 0s (0s including waiting)'
        else:
            message = f'Container image "{image}" already present on machine'
        await self.event(pod, "Normal", "Pulled", message, field_path=field_path)
        return unpacked

    async def _prepare(
        self, rt: PodRuntime, pod: dict[str, Any], container: dict[str, Any]
    ) -> tuple[list[str], dict[str, str], str]:
        rt.root.mkdir(parents=True, exist_ok=True)
        await self.network.attach(rt.uid, pod, rt.ip)
        launch = await prepare(
            pod,
            container,
            ip=rt.ip,
            pod_root=rt.root,
            claims_dir=self.claims_dir,
            base_env=self.base_env,
            entrypoints=self.entrypoints,
            isolated=self.network.isolated,
            data=self.data,
        )
        rt.mounts = launch.mounts
        return launch.argv, launch.env, launch.cwd

    async def _prepare_image(
        self, rt: PodRuntime, pod: dict[str, Any], container: dict[str, Any], image: ImageConfig
    ) -> tuple[list[str], dict[str, str], str]:
        """Volumes, environment and command line of a container run from its image: paths
        stay as the pod spec writes them (the mounts are real), the image gives the rest."""
        if not self.network.isolated:
            raise ConfigError(
                "CreateContainerError",
                "an OCI runtime needs the pod network (Cluster(pod_network=True))",
            )
        rt.root.mkdir(parents=True, exist_ok=True)
        await self.network.attach(rt.uid, pod, rt.ip)
        rt.mounts = await mount_volumes(
            pod, container, pod_root=rt.root, claims_dir=self.claims_dir, data=self.data
        )
        env = {**image.env, "HOSTNAME": pod["metadata"]["name"]}
        env.update(await container_env(pod, container, rt.ip, self.data.read))
        argv = [expand(a, env) for a in command_line(container, image)]
        if not argv:
            raise ConfigError(
                "CreateContainerConfigError",
                f"no command to run: image {container.get('image')!r} has no entrypoint or "
                "command and the container sets neither command nor args",
            )
        return argv, env, container.get("workingDir") or image.cwd

    async def _start_image(
        self,
        rt: PodRuntime,
        pod: dict[str, Any],
        container: dict[str, Any],
        image: ImageConfig,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
    ) -> OciProcess | None:
        """The container run from its image, or None (reported) when runc cannot start it."""
        if self.oci is None:  # only called when _pull found the image in the runtime's store
            raise RuntimeError("no OCI runtime")
        try:
            return await self.oci.start(
                image=image,
                pod=pod,
                container=container,
                argv=argv,
                env=env,
                mounts=rt.mounts,
                pod_root=rt.root,
                netns=self.network.netns(rt.uid),
                log_path=log_path,
            )
        except (ConfigError, OSError) as exc:
            reason = exc.reason if isinstance(exc, ConfigError) else "RunContainerError"
            message = str(exc)
            await self.patch_status(
                rt, pod, "Pending", {"waiting": {"reason": reason, "message": message}}, ready=False
            )
            await self.event(
                pod, "Warning", "Failed", f"Error: {message}",
                field_path=f"spec.containers{{{rt.container}}}",
            )  # fmt: skip
            return None

    async def _probe(
        self,
        rt: PodRuntime,
        pod: dict[str, Any],
        container: dict[str, Any],
        probe: dict[str, Any],
        started: str,
    ) -> None:
        """Readiness, flipping Ready in the pod's status on change (probes.py)."""

        async def unhealthy(message: str) -> None:
            field_path = f"spec.containers{{{rt.container}}}"
            await self.event(pod, "Warning", "Unhealthy", message, field_path=field_path)

        async def ready_changed(ready: bool) -> None:
            running = {"running": {"startedAt": started}}
            await self.patch_status(rt, pod, "Running", running, ready=ready)

        await watch_readiness(
            probe,
            container,
            rt.ip,
            lambda argv: self.network.wrap(rt.uid, argv),
            unhealthy=unhealthy,
            ready_changed=ready_changed,
        )

    async def event(self, pod: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        await self.status.event(pod, *args, **kwargs)

    async def patch_status(
        self,
        rt: PodRuntime,
        pod: dict[str, Any],
        phase: str,
        state: dict[str, Any],
        *,
        ready: bool,
        last_state: dict[str, Any] | None = None,
    ) -> None:
        status = pod_status(
            pod["spec"]["containers"][0],
            ip=rt.ip,
            started_at=rt.started_at,
            pid=rt.process.pid if rt.process else None,
            restarts=rt.restarts,
            phase=phase,
            state=state,
            ready=ready,
            last_state=last_state,
        )
        await self.status.post(rt.namespace, rt.name, status)

    async def kill(self, rt: PodRuntime, grace: float) -> int | None:
        proc = rt.process
        if proc is None or proc.returncode is not None:
            return proc.returncode if proc else None
        if isinstance(proc, LightServer):
            await proc.stop()
            return 0
        if isinstance(proc, OciProcess):
            return await proc.stop(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(max(grace, 0.1)):
                return await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return await proc.wait()
