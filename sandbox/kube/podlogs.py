"""Where the process kubelet keeps container logs, and reading the current one.

One folder per pod instance (its uid) and one file per container instance
(``<ns>/<pod>/<uid>/<container>/<restartCount>.log``): the kubelet writes them,
``pods/log`` (podsubresources.py) and the test harness read them.
"""

from __future__ import annotations

from pathlib import Path


def pod_log_dir(log_dir: Path, namespace: str, name: str, uid: str) -> Path:
    """Where a pod's container logs live: one folder per pod instance (uid), so a new pod
    with a reused name starts with empty logs, as on a real node."""
    return log_dir / namespace / name / uid


def instance_log(pod_dir: Path, container: str, restarts: int) -> Path:
    """The log of one container instance: the container's ``restarts``-th run in the pod."""
    return pod_dir / container / f"{restarts}.log"


def read_current_log(log_dir: Path, namespace: str, name: str, container: str = "") -> str:
    """The current log of a pod's container (its only one by default): of the newest pod of
    that name, its latest container instance."""
    pods = sorted((log_dir / namespace / name).glob("*/"), key=lambda p: p.stat().st_mtime)
    containers = sorted(pods[-1].glob("*/")) if pods else []
    if container:
        containers = [c for c in containers if c.name == container]
    if len(containers) != 1:
        raise FileNotFoundError(f"no log of {namespace}/{name} {container}".rstrip())
    instances = sorted(containers[0].glob("*.log"), key=lambda p: int(p.stem))
    return instances[-1].read_text(errors="replace")
