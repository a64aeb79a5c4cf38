"""A kubelet that runs each pod's container as a local process.

For every pod bound to one of its nodes it gives the pod a loopback address
of its own (127.0.0.N), or with a pod network (podnet.py) a network namespace
and an address of 198.18.0.0/15 under the NetworkPolicies, builds the
container's environment as Kubernetes does (``env``, ``envFrom``, field,
Secret and ConfigMap references, ``$(VAR)`` expansion), starts ``command``
+ ``args`` as a process, and reports ``Running``, ``podIP`` and readiness
(honouring a readiness probe).
A process that exits is restarted or reported finished according to the
pod's ``restartPolicy``, with the exit code. On deletion it sends SIGTERM,
SIGKILL after the grace period, and then confirms the deletion with a zero
grace period, as the real kubelet does.

What a process cannot have, it is given by translation: a wildcard listen
address (``0.0.0.0``) in arguments or environment becomes the pod's own
address (its "network namespace"; not with a pod network, which gives it a
real one), and paths under a volume's ``mountPath``
become the host directory that backs the volume. Images are not pulled: a
container with no ``command`` runs its ``args`` directly, which is what the
entrypoints of the Jupyter images do, unless ``entrypoints`` maps the image
to a command. Init containers and second containers are not run; such pods
are reported with a clear ``CreateContainerError``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from . import rawapi
from .events import EventRecorder
from .informer import Informer
from .lightpod import LightServer
from .podenv import ConfigError, container_env, expand
from .podnet import LoopbackAddresses, PodNetwork
from .store import now_iso

log = logging.getLogger(__name__)
BACKOFF_START, BACKOFF_MAX = 1.0, 30.0
REPEAT_EVENT_AFTER = 30.0


def exit_code(returncode: int) -> int:
    """A container's exit code as a kubelet reports it: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def terminated_state(code: int, started: str, pid: int) -> dict[str, Any]:
    return {
        "exitCode": code,
        "reason": "Completed" if code == 0 else "Error",
        "startedAt": started,
        "finishedAt": now_iso(),
        "containerID": f"process://{pid}",
    }


def pod_log_dir(log_dir: Path, namespace: str, name: str, uid: str) -> Path:
    """Where a pod's container logs live: one folder per pod instance (uid), so a new pod
    with a reused name starts with empty logs, as on a real node."""
    return log_dir / namespace / name / uid


def instance_log(pod_dir: Path, container: str, restarts: int) -> Path:
    """The log of one container instance: the container's ``restarts``-th run in the pod."""
    return pod_dir / container / f"{restarts}.log"


@dataclass
class PodRuntime:
    uid: str
    namespace: str
    name: str
    ip: str
    root: Path
    log_dir: Path
    """This pod's logs: ``<container>/<restartCount>.log``, one file per container instance."""
    container: str = ""
    process: asyncio.subprocess.Process | LightServer | None = None
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


class ProcessKubelet:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        nodes: set[str],
        state_dir: Path,
        namespace: str | None = None,
        entrypoints: dict[str, list[str]] | None = None,
        first_ip: int = 2,
        ip_block: int | None = None,
        base_env: dict[str, str] | None = None,
        light: bool = False,
        network: PodNetwork | None = None,
    ) -> None:
        self.core = client.CoreV1Api(api)
        # Pods' addresses, and with a PodNetworking (podnet.py) their namespaces and policies.
        self.network = network or LoopbackAddresses(first_ip, ip_block)
        # Light mode (lightpod.py): each pod is a minimal single-user server in
        # this process, for load tests; no process is started.
        self.light = light
        self._light_session: aiohttp.ClientSession | None = None
        self.events = EventRecorder(self.core, "kubelet", host_is_node=True)
        self.nodes = nodes
        self.state_dir = state_dir
        self.log_dir = state_dir / "logs"
        self.entrypoints = entrypoints or {}
        self.base_env = (
            base_env
            if base_env is not None
            else {
                k: v
                for k, v in os.environ.items()
                if k in ("PATH", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV")
            }
        )
        self.pods: dict[str, PodRuntime] = {}
        if namespace is None:
            self.informer = Informer(self.core.list_pod_for_all_namespaces, self._on_change)
        else:
            self.informer = Informer(
                self.core.list_namespaced_pod, self._on_change, namespace=namespace
            )

    # -- lifecycle ---------------------------------------------------------
    async def run(self) -> None:
        try:
            await self.informer.run()
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        for rt in list(self.pods.values()):
            rt.terminating = True
            await self._kill(rt, grace=1.0)
            if rt.supervisor:
                rt.supervisor.cancel()
        self.pods.clear()
        if self._light_session is not None:
            await self._light_session.close()
            self._light_session = None

    # -- reconciling --------------------------------------------------------
    async def _on_change(self, kind: str, pod: dict[str, Any] | None) -> None:
        if kind == "SYNC":
            live = {p["metadata"]["uid"] for p in self.informer.items.values()}
            for uid in [u for u in self.pods if u not in live]:
                await self._forget(self.pods[uid])
            for p in list(self.informer.items.values()):
                await self._reconcile(p)
        elif kind == "DELETED" and pod is not None:
            rt = self.pods.get(pod["metadata"]["uid"])
            if rt is not None:
                await self._forget(rt)
        elif pod is not None:
            await self._reconcile(pod)

    async def _reconcile(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        if spec.get("nodeName") not in self.nodes:
            return
        rt = self.pods.get(meta["uid"])
        if meta.get("deletionTimestamp"):
            if rt is None:
                rt = self._runtime(pod)
            if not rt.terminating:
                rt.terminating = True
                rt.terminator = asyncio.create_task(self._terminate(rt, pod))
            return
        if rt is not None:
            await self.network.relabel(rt.uid, meta.get("labels") or {})
        if rt is None and pod.get("status", {}).get("phase", "Pending") == "Pending":
            rt = self._runtime(pod)
            rt.supervisor = asyncio.create_task(self._supervise(rt, pod))

    def read_log(self, namespace: str, name: str, container: str = "") -> str:
        """The current log this kubelet wrote for a pod's container (its only one by default):
        of the newest pod of that name, its latest container instance."""
        pods = sorted((self.log_dir / namespace / name).glob("*/"), key=lambda p: p.stat().st_mtime)
        containers = sorted(pods[-1].glob("*/")) if pods else []
        if container:
            containers = [c for c in containers if c.name == container]
        if len(containers) != 1:
            raise FileNotFoundError(f"no log of {namespace}/{name} {container}".rstrip())
        instances = sorted(containers[0].glob("*.log"), key=lambda p: int(p.stem))
        return instances[-1].read_text(errors="replace")

    def _runtime(self, pod: dict[str, Any]) -> PodRuntime:
        meta = pod["metadata"]
        rt = PodRuntime(
            uid=meta["uid"],
            namespace=meta["namespace"],
            name=meta["name"],
            ip=self.network.allocate(),
            root=self.state_dir / "pods" / meta["uid"],
            log_dir=pod_log_dir(self.log_dir, meta["namespace"], meta["name"], meta["uid"]),
            container=pod["spec"]["containers"][0]["name"],
        )
        self.pods[rt.uid] = rt
        return rt

    async def _forget(self, rt: PodRuntime) -> None:
        rt.terminating = True
        await self._kill(rt, grace=1.0)
        if rt.supervisor:
            rt.supervisor.cancel()
        self.pods.pop(rt.uid, None)
        await self.network.detach(rt.uid, rt.ip)
        shutil.rmtree(rt.root, ignore_errors=True)

    # -- running -----------------------------------------------------------
    async def _supervise(self, rt: PodRuntime, pod: dict[str, Any]) -> None:
        spec = pod["spec"]
        container = spec["containers"][0]
        field_path = f"spec.containers{{{container['name']}}}"
        try:
            if len(spec["containers"]) > 1 or spec.get("initContainers"):
                raise ConfigError(
                    "CreateContainerError",
                    "the process kubelet runs exactly one container per pod and no init containers",
                )
            await self._pull(pod, container, field_path)
            argv, env, cwd = await self._prepare(rt, pod, container)
            rt.env, rt.cwd = env, cwd
        except (ConfigError, OSError) as exc:
            # A kubelet that cannot start a container says why, in its status and an event.
            reason = exc.reason if isinstance(exc, ConfigError) else "CreateContainerConfigError"
            message = str(exc) if isinstance(exc, ConfigError) else f"{exc.strerror}: {exc}"
            await self._patch_status(
                rt,
                pod,
                "Pending",
                {"waiting": {"reason": reason, "message": message}},
                ready=False,
            )
            await self._event(pod, "Warning", "Failed", f"Error: {message}", field_path=field_path)
            return
        policy = spec.get("restartPolicy", "Always")
        backoff = BACKOFF_START
        while not rt.terminating:
            log_path = instance_log(rt.log_dir, rt.container, rt.restarts)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            if self.light:
                rt.process = await self._start_light(rt, env)
            else:
                rt.process = await self._start_process(rt, pod, argv, env, cwd, log_path)
                if rt.process is None:
                    return
            started = rt.container_started = now_iso()
            await self._event(
                pod,
                "Normal",
                "Created",
                f"Created container: {rt.container}",
                field_path=field_path,
            )
            await self._event(
                pod, "Normal", "Started", f"Started container {rt.container}", field_path=field_path
            )
            probe = container.get("readinessProbe")
            await self._patch_status(
                rt, pod, "Running", {"running": {"startedAt": started}}, ready=probe is None
            )
            prober = (
                asyncio.create_task(self._probe(rt, pod, container, probe, started))
                if probe
                else None
            )
            code = exit_code(await rt.process.wait())
            if prober:
                prober.cancel()
            if rt.terminating:
                return
            terminated = terminated_state(code, started, rt.process.pid)
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                phase = "Succeeded" if code == 0 else "Failed"
                await self._patch_status(rt, pod, phase, {"terminated": terminated}, ready=False)
                return
            rt.restarts += 1
            await self._patch_status(
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
            await self._event(
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
                await self._patch_status(
                    rt,
                    pod,
                    "Pending",
                    {"waiting": {"reason": "RunContainerError", "message": message}},
                    ready=False,
                )
                await self._event(
                    pod, "Warning", "Failed", f"Error: {message}", field_path=field_path
                )
                return None

    async def _start_light(self, rt: PodRuntime, env: dict[str, str]) -> LightServer:
        if self._light_session is None:
            self._light_session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=30),
                connector=aiohttp.TCPConnector(limit=64),
            )
        server = LightServer(env, rt.ip, self._light_session)
        await server.start()
        return server

    async def _pull(self, pod: dict[str, Any], container: dict[str, Any], field_path: str) -> None:
        """Images are not pulled here (the process runs from this machine); the events say
        what a kubelet would for the container's pull policy."""
        image = container.get("image", "")
        if container.get("imagePullPolicy") == "Always":
            await self._event(
                pod, "Normal", "Pulling", f'Pulling image "{image}"', field_path=field_path
            )
            message = f'Successfully pulled image "{image}" in 0s (0s including waiting)'
        else:
            message = f'Container image "{image}" already present on machine'
        await self._event(pod, "Normal", "Pulled", message, field_path=field_path)

    async def _prepare(
        self, rt: PodRuntime, pod: dict[str, Any], container: dict[str, Any]
    ) -> tuple[list[str], dict[str, str], str]:
        rt.root.mkdir(parents=True, exist_ok=True)
        await self.network.attach(rt.uid, pod, rt.ip)
        await self._mount_volumes(rt, pod, container)
        env = dict(self.base_env)
        env["HOSTNAME"] = pod["metadata"]["name"]
        env.update(await container_env(pod, container, rt.ip, self._read_data))
        env = {k: self._translate(rt, v) for k, v in env.items()}
        command = container.get("command") or self.entrypoints.get(container.get("image", ""), [])
        argv = [self._translate(rt, expand(a, env)) for a in [*command, *container.get("args", [])]]
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
        cwd = (
            self._translate(rt, container["workingDir"])
            if container.get("workingDir")
            else str(rt.root)
        )
        Path(cwd).mkdir(parents=True, exist_ok=True)
        env.setdefault("HOME", cwd)
        return argv, env, cwd

    async def exec_in(
        self, namespace: str, name: str, container: str, command: list[str], *, stdin: bool
    ) -> asyncio.subprocess.Process:
        """Run ``command`` in a running pod's container, as ``pods/exec`` asks a kubelet to:
        with the container's environment, working directory and mounts."""
        rt = next(
            (r for r in self.pods.values() if (r.namespace, r.name) == (namespace, name)), None
        )
        if rt is None or rt.process is None or rt.process.returncode is not None:
            raise ConfigError("ContainerNotRunning", f'container not found ("{container}")')
        argv = [self._translate(rt, expand(a, rt.env)) for a in command]
        resolved = shutil.which(argv[0], path=rt.env.get("PATH"))
        if resolved is None:
            raise ConfigError(
                "ExecError",
                f'exec: "{argv[0]}": executable file not found in $PATH',
            )
        argv = self.network.wrap(rt.uid, [resolved, *argv[1:]])
        return await asyncio.create_subprocess_exec(
            *argv,
            env=rt.env,
            cwd=rt.cwd or str(rt.root),
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )

    def _translate(self, rt: PodRuntime, value: str) -> str:
        if not self.network.isolated:  # a loopback address stands in for the pod's namespace
            value = value.replace("0.0.0.0", rt.ip)  # noqa: S104
        for mount_path, host in rt.mounts:
            pattern = re.compile(rf"(^|=){re.escape(mount_path.rstrip('/'))}(?=/|$)")
            value = pattern.sub(lambda m, h=host: m.group(1) + str(h), value)
        return value

    async def _mount_volumes(
        self, rt: PodRuntime, pod: dict[str, Any], container: dict[str, Any]
    ) -> None:
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        ns = rt.namespace
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise ConfigError(
                    "CreateContainerConfigError",
                    f'volume "{mount["name"]}" is not defined in the pod',
                )
            if claim := (volume.get("persistentVolumeClaim") or {}).get("claimName"):
                host = self.state_dir / "claims" / ns / claim
            else:
                host = rt.root / "volumes" / mount["name"]
            host.mkdir(parents=True, exist_ok=True)
            for kind, reader in (
                ("secret", self._secret_data),
                ("configMap", self._configmap_data),
            ):
                if source := volume.get(kind):
                    name = source.get("secretName") or source.get("name")
                    for key, data in (
                        await reader(ns, name, optional=bool(source.get("optional")))
                    ).items():
                        (host / key).write_bytes(data)
            if sub := mount.get("subPath"):
                # A subPath that names a file (a ConfigMap key, say) is mounted as that
                # file; one that does not exist yet is created as a directory.
                host = host / sub
                if not host.exists():
                    host.mkdir(parents=True)
            rt.mounts.append((mount["mountPath"], host))
        rt.mounts.sort(key=lambda m: len(m[0]), reverse=True)

    async def _read_data(self, kind: str, ns: str, name: str, optional: bool) -> dict[str, bytes]:
        reader = self._secret_data if kind == "secret" else self._configmap_data
        return await reader(ns, name, optional)

    async def _secret_data(self, ns: str, name: str, optional: bool = False) -> dict[str, bytes]:
        data = await self._object_data(
            self.core.read_namespaced_secret, "secret", ns, name, optional
        )
        return {k: base64.b64decode(v) for k, v in data.items()}

    async def _configmap_data(self, ns: str, name: str, optional: bool = False) -> dict[str, bytes]:
        data = await self._object_data(
            self.core.read_namespaced_config_map, "configmap", ns, name, optional
        )
        return {k: v.encode() for k, v in data.items()}

    async def _object_data(
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

    async def _probe(
        self,
        rt: PodRuntime,
        pod: dict[str, Any],
        container: dict[str, Any],
        probe: dict[str, Any],
        started: str,
    ) -> None:
        """Readiness: every periodSeconds (at most 1s here), flipping Ready on change."""
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)))
        period = min(float(probe.get("periodSeconds", 10)), 1.0)
        threshold = int(probe.get("failureThreshold", 3))
        ready, failures, last_unhealthy = False, 0, -REPEAT_EVENT_AFTER
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        async with aiohttp.ClientSession() as session:
            while True:
                failure = await self._check(session, rt, probe, ports)
                ok = failure is None
                failures = 0 if ok else failures + 1
                # Repeats are folded, as the kubelet's event correlator folds them.
                if not ok and time.monotonic() - last_unhealthy > REPEAT_EVENT_AFTER:
                    last_unhealthy = time.monotonic()
                    await self._event(
                        pod,
                        "Warning",
                        "Unhealthy",
                        f"Readiness probe failed: {failure}",
                        field_path=f"spec.containers{{{rt.container}}}",
                    )
                if ok != ready and (ok or failures >= threshold):
                    ready = ok
                    await self._patch_status(
                        rt, pod, "Running", {"running": {"startedAt": started}}, ready=ready
                    )
                await asyncio.sleep(period)

    async def _check(
        self,
        session: aiohttp.ClientSession,
        rt: PodRuntime,
        probe: dict[str, Any],
        ports: dict[Any, Any],
    ) -> str | None:
        """None when the probe succeeds, else why it failed, worded as a kubelet words it."""
        timeout = float(probe.get("timeoutSeconds", 1))
        if http := probe.get("httpGet"):
            port = ports.get(http["port"], http["port"])
            scheme = http.get("scheme", "HTTP").lower()
            url = f"{scheme}://{rt.ip}:{port}{http.get('path', '/')}"
            try:
                async with session.get(
                    url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
                ) as r:
                    if 200 <= r.status < 400:
                        return None
                    return f"HTTP probe failed with statuscode: {r.status}"
            except TimeoutError:
                return f'Get "{url}": context deadline exceeded'
            except (OSError, aiohttp.ClientError) as exc:
                return f'Get "{url}": {_reason(exc)}'
        if tcp := probe.get("tcpSocket"):
            port = ports.get(tcp["port"], tcp["port"])
            try:
                async with asyncio.timeout(timeout):
                    _, writer = await asyncio.open_connection(rt.ip, int(port))
                writer.close()
                return None
            except TimeoutError:
                return f"dial tcp {rt.ip}:{port}: i/o timeout"
            except OSError as exc:
                return f"dial tcp {rt.ip}:{port}: {_reason(exc)}"
        if command := (probe.get("exec") or {}).get("command"):
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.network.wrap(rt.uid, command),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                async with asyncio.timeout(timeout):
                    code = await proc.wait()
            except TimeoutError:
                return f"command timed out after {timeout:g}s"
            except OSError as exc:
                return f"exec failed: {_reason(exc)}"
            return None if code == 0 else f"command exited with {code}"
        return "probe has no handler"

    # -- status and termination ------------------------------------------
    async def _event(self, pod: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        """An event, on a best-effort basis as a kubelet's are: one the API server does not
        take is dropped, never the loop that reports it."""
        try:
            await self.events.record(pod, *args, **kwargs)
        except (ApiException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("event for %s dropped: %s", pod["metadata"].get("name"), exc)

    async def _patch_status(
        self,
        rt: PodRuntime,
        pod: dict[str, Any],
        phase: str,
        state: dict[str, Any],
        *,
        ready: bool,
        last_state: dict[str, Any] | None = None,
    ) -> None:
        container = pod["spec"]["containers"][0]
        pid = rt.process.pid if rt.process else None
        running = "running" in state
        cond = "True" if ready else "False"
        stamp = now_iso()
        status = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": rt.ip,
            "podIPs": [{"ip": rt.ip}],
            "startTime": rt.started_at,
            "conditions": [
                {
                    "type": "PodReadyToStartContainers",
                    "status": "True",
                    "lastTransitionTime": stamp,
                },
                {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                {"type": "Ready", "status": cond, "lastTransitionTime": stamp},
                {"type": "ContainersReady", "status": cond, "lastTransitionTime": stamp},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            ],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": container.get("image", ""),
                    "containerID": f"process://{pid}" if pid else None,
                    "ready": ready,
                    "started": running,
                    "restartCount": rt.restarts,
                    "state": state,
                    "lastState": last_state or {},
                }
            ],
        }
        # As a kubelet's status manager does, the update is retried until the API server takes
        # it: a status lost while it restarts would leave a ready pod unready for ever.
        delay = 0.2
        while True:
            try:
                await self.core.patch_namespaced_pod_status(
                    rt.name,
                    rt.namespace,
                    {"status": status},
                    _content_type="application/merge-patch+json",
                )
                return
            except ApiException as exc:
                if exc.status == 404:
                    return  # the pod is gone
                if exc.status != 429 and exc.status < 500:
                    log.warning(
                        "status update for %s/%s failed: %s", rt.namespace, rt.name, exc.status
                    )
                    return
                reason: object = exc.status
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = type(exc).__name__
            log.info(
                "status update for %s/%s: %s, retrying in %.1fs",
                rt.namespace, rt.name, reason, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _kill(self, rt: PodRuntime, grace: float) -> int | None:
        proc = rt.process
        if proc is None or proc.returncode is not None:
            return proc.returncode if proc else None
        if isinstance(proc, LightServer):
            await proc.stop()
            return 0
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(max(grace, 0.1)):
                return await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return await proc.wait()

    async def _terminate(self, rt: PodRuntime, pod: dict[str, Any]) -> None:
        grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
        if rt.process is not None and rt.process.returncode is None:
            await self._event(
                pod,
                "Normal",
                "Killing",
                f"Stopping container {rt.container}",
                field_path=f"spec.containers{{{rt.container}}}",
            )
        code = await self._kill(rt, grace)
        if rt.supervisor:
            rt.supervisor.cancel()
        if code is not None and rt.process is not None:
            terminated = terminated_state(
                exit_code(code), rt.container_started or rt.started_at, rt.process.pid
            )
            phase = "Succeeded" if code == 0 else "Failed"
            await self._patch_status(rt, pod, phase, {"terminated": terminated}, ready=False)
        try:
            # One DeleteOptions in the body: a real API server reads a DELETE's options
            # from its body alone when it has one, and ignores the query string.
            await rawapi.call(
                self.core.delete_namespaced_pod,
                rt.name,
                rt.namespace,
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": rt.uid}},
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning(
                    "confirming deletion of %s/%s failed: %s", rt.namespace, rt.name, exc.status
                )


def _reason(exc: BaseException) -> str:
    # aiohttp wraps the socket error; the innermost one says what happened
    # ("connect: connection refused" on a real kubelet).
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused"
    return str(exc) or type(exc).__name__
