"""Run a built image for real with runc: unpack its OCI layout with umoci, start the bundle.

`podman run` is refused on these machines (it sets rlimits and the container lacks
CAP_SYS_RESOURCE), but runc runs an OCI bundle whose `config.json` asks for no rlimits and
no cgroup resources. umoci unpacks the layout into such a bundle with the image's own
entry point, environment, user and working directory; this module then takes out what cannot
be granted here (rlimits, cgroup resources, the network namespace: the container shares the
host's loopback so a test can reach it on 127.0.0.1) and adds what a pod would have: a
read-only root, tmpfs volumes, extra environment, a uid.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sovereign_hub.processes import stop_process


class RuncError(RuntimeError):
    """An unpack or a start that failed; the message has the tool's own words."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What a pod spec would say about the container (all optional)."""

    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    uid: int | None = None
    gid: int | None = None
    #: supplementary groups (a pod's ``fsGroup``, which a kubelet adds to every container)
    additional_gids: tuple[int, ...] = ()
    read_only_root: bool = True
    tmpfs: tuple[str, ...] = ("/tmp",)  # noqa: S108 - a path inside the container
    binds: dict[str, Path] = field(default_factory=dict)
    #: bind mounts the container may write (a pod's emptyDir or claim)
    writable: dict[str, Path] = field(default_factory=dict)
    cwd: str | None = None
    #: a network namespace to join (``/var/run/netns/<name>``); None: the host's
    netns: str | None = None
    #: a pod's ``capabilities.drop: [ALL]``: the process keeps no capability
    drop_all_capabilities: bool = False
    #: a pod's ``allowPrivilegeEscalation: false``
    no_new_privileges: bool = False


def unpack(layout: Path, tag: str, bundle: Path) -> Path:
    """Unpack ``layout:tag`` into the runc bundle directory ``bundle`` (which must not exist)."""
    done = subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuncError(f"umoci unpack {layout}:{tag}: {done.stderr.strip()}")
    return bundle


def configure(config: dict[str, Any], options: RunOptions) -> dict[str, Any]:
    """``config`` (a runtime spec from umoci) made runnable here and shaped by ``options``;
    a copy, the input is left as it was."""
    spec = json.loads(json.dumps(config))
    process = spec["process"]
    process.pop("rlimits", None)
    process["terminal"] = False
    if options.args:
        process["args"] = list(options.args)
    env = dict(item.split("=", 1) for item in process.get("env", []))
    env.update(options.env)
    process["env"] = [f"{k}={v}" for k, v in env.items()]
    if options.uid is not None:
        process["user"]["uid"] = options.uid
    if options.gid is not None:
        process["user"]["gid"] = options.gid
    if options.additional_gids:
        process["user"]["additionalGids"] = list(options.additional_gids)
    if options.cwd:
        process["cwd"] = options.cwd
    if options.drop_all_capabilities:
        process["capabilities"] = {k: [] for k in ("bounding", "effective", "inheritable",
                                                   "permitted", "ambient")}  # fmt: skip
    if options.no_new_privileges:
        process["noNewPrivileges"] = True
    linux = spec.setdefault("linux", {})
    linux.pop("resources", None)
    linux["namespaces"] = [n for n in linux.get("namespaces", []) if n["type"] != "network"]
    if options.netns:
        linux["namespaces"].append({"type": "network", "path": options.netns})
    spec["root"]["readonly"] = options.read_only_root
    replaced = {*options.tmpfs, *options.binds, *options.writable}
    mounts = [m for m in spec.get("mounts", []) if m["destination"] not in replaced]
    # Owned by the container's user, as a pod's emptyDir is writable through its fsGroup
    # (runc gives a tmpfs the mode of the directory it covers, so a mode alone is not enough).
    owner = [f"uid={process['user'].get('uid', 0)}", f"gid={process['user'].get('gid', 0)}"]
    for path in options.tmpfs:
        tmpfs = ["nosuid", "nodev", "mode=1777", "size=256m", *owner]
        mounts.append({"destination": path, "type": "tmpfs", "source": "tmpfs", "options": tmpfs})
    for destination, source in options.binds.items():
        mounts.append({"destination": destination, "type": "bind", "source": str(source),
                       "options": ["rbind", "ro"]})  # fmt: skip
    for destination, source in options.writable.items():
        mounts.append({"destination": destination, "type": "bind", "source": str(source),
                       "options": ["rbind", "rw"]})  # fmt: skip
    # The host's resolver and hosts file, as a kubelet would provide them.
    for name in ("/etc/resolv.conf", "/etc/hosts"):
        if Path(name).exists() and not any(m["destination"] == name for m in mounts):
            mounts.append({"destination": name, "type": "bind", "source": name,
                           "options": ["rbind", "ro"]})  # fmt: skip
    spec["mounts"] = mounts
    return spec


class Container:
    """One runc container from an unpacked bundle; ``stop()`` kills and deletes it."""

    def __init__(self, bundle: Path, options: RunOptions, log: Path) -> None:
        if not shutil.which("runc"):
            raise RuncError("runc is not installed (apt-get install runc)")
        config_path = bundle / "config.json"
        config_path.write_text(json.dumps(configure(json.loads(config_path.read_text()), options)))
        self.id = f"sovhub-{uuid.uuid4().hex[:12]}"
        self.log_path = log
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            ["runc", "run", "--bundle", str(bundle), self.id],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
        )  # fmt: skip

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def main_pid(self) -> int:
        """The container's first process, as the host sees it (for /proc checks)."""
        done = subprocess.run(["runc", "state", self.id], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuncError(f"runc state {self.id}: {done.stderr.strip()}")
        return int(json.loads(done.stdout)["pid"])

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self) -> None:
        subprocess.run(["runc", "kill", self.id, "KILL"], capture_output=True)
        stop_process(self.process, timeout=10)
        subprocess.run(["runc", "delete", "--force", self.id], capture_output=True)
        self.log.close()
