"""A kubelet that runs each pod's container as a local process.

It watches the pods bound to its nodes. For each new one it gives the pod a
loopback address of its own (127.0.0.N), or with a pod network (podnet.py) a
network namespace and an address of 198.18.0.0/15 under the NetworkPolicies,
and hands the container to a :class:`~.containerrun.ContainerRunner`, which
starts it, probes it, restarts it by ``restartPolicy`` and reports its status
and Events. On deletion it stops the container (SIGTERM, SIGKILL after the
grace period), reports the final state and then confirms the deletion with a
zero grace period, as the real kubelet does. It also serves what a real
API server asks a kubelet for: a container's log and ``exec`` in it.

The jobs live in their own modules: the container's life in containerrun.py,
what it is given before it starts (volumes, environment, command line and
the translation of paths and addresses) in podsetup.py and podenv.py, status
and Events in podstatus.py, readiness probes in probes.py, log files in
podlogs.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from . import rawapi
from .containerrun import ContainerRunner, PodRuntime
from .informer import Informer
from .ociruntime import OciProcess, OciRuntime
from .podenv import ConfigError, expand
from .podlogs import pod_log_dir, read_current_log
from .podnet import LoopbackAddresses, PodNetwork
from .podsetup import ObjectData, translate
from .podstatus import StatusReporter, exit_code, terminated_state

log = logging.getLogger(__name__)


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
        oci: OciRuntime | None = None,
    ) -> None:
        self.core = client.CoreV1Api(api)
        # Pods' addresses, and with a PodNetworking (podnet.py) their namespaces and policies.
        self._loopback: LoopbackAddresses | None = None
        if network is None:
            network = self._loopback = LoopbackAddresses(first_ip, ip_block)
        self.network: PodNetwork = network
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
        self.runner = ContainerRunner(
            status=StatusReporter(self.core),
            network=self.network,
            data=ObjectData(self.core),
            claims_dir=state_dir / "claims",
            entrypoints=self.entrypoints,
            base_env=self.base_env,
            light=light,
            oci=oci,
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
        try:
            for rt in list(self.pods.values()):
                rt.terminating = True
                await self.runner.kill(rt, grace=1.0)
                if rt.supervisor:
                    rt.supervisor.cancel()
            self.pods.clear()
            await self.runner.close()
        finally:
            if self._loopback is not None:  # a network given to the kubelet: its owner's
                self._loopback.close()

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
            rt.supervisor = asyncio.create_task(self.runner.supervise(rt, pod))

    def read_log(self, namespace: str, name: str, container: str = "") -> str:
        """The current log this kubelet wrote for a pod's container (its only one by default):
        of the newest pod of that name, its latest container instance."""
        return read_current_log(self.log_dir, namespace, name, container)

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
        await self.runner.kill(rt, grace=1.0)
        if rt.supervisor:
            rt.supervisor.cancel()
        self.pods.pop(rt.uid, None)
        await self.network.detach(rt.uid, rt.ip)
        shutil.rmtree(rt.root, ignore_errors=True)

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
        if isinstance(rt.process, OciProcess):
            # In the container itself: its root, mounts, user and environment.
            return await asyncio.create_subprocess_exec(
                *rt.process.exec_argv([expand(a, rt.env) for a in command]),
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
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
        return translate(value, ip=rt.ip, mounts=rt.mounts, isolated=self.network.isolated)

    # -- status and termination ------------------------------------------
    async def _terminate(self, rt: PodRuntime, pod: dict[str, Any]) -> None:
        grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
        if rt.process is not None and rt.process.returncode is None:
            await self.runner.event(
                pod,
                "Normal",
                "Killing",
                f"Stopping container {rt.container}",
                field_path=f"spec.containers{{{rt.container}}}",
            )
        code = await self.runner.kill(rt, grace)
        if rt.supervisor:
            rt.supervisor.cancel()
        if code is not None and rt.process is not None:
            terminated = terminated_state(
                exit_code(code), rt.container_started or rt.started_at, rt.process.pid
            )
            phase = "Succeeded" if code == 0 else "Failed"
            await self.runner.patch_status(rt, pod, phase, {"terminated": terminated}, ready=False)
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
