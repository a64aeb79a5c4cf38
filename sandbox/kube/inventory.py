"""A declared node inventory (YAML) and the Node objects it stands for."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sovereign_hub.policy.quantity import Quantity


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeTaint(_Model):
    key: str
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class NodeSpec(_Model):
    """One node: its name, labels, taints and what it can give pods."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    labels: dict[str, str] = Field(default_factory=dict)
    taints: tuple[NodeTaint, ...] = ()
    allocatable: dict[str, Quantity]
    """cpu, memory, pods and extended resources such as nvidia.com/gpu or nvidia.com/mig-1g.5gb."""
    unschedulable: bool = False


class Inventory(_Model):
    nodes: tuple[NodeSpec, ...] = Field(min_length=1)


class InventoryError(ValueError):
    pass


def load_inventory(path: str | Path) -> Inventory:
    try:
        data = yaml.safe_load(Path(path).read_text())
        return Inventory.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise InventoryError(f"{path}: cannot read the node inventory: {exc}") from None
    except ValidationError as exc:
        rows = [
            f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        raise InventoryError("\n".join(rows)) from None


def node_conditions(moment: str | None = None) -> list[dict[str, Any]]:
    """The conditions a healthy kubelet posts, each with its heartbeat and transition time."""
    stamp = moment or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory",
         "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "process kubelet is posting ready status"),
    ]  # fmt: skip
    return [
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
        for kind, status, reason, message in rows
    ]


def node_object(spec: NodeSpec) -> dict[str, Any]:
    """The Node as a kubelet would register it (standard labels, capacity, Ready)."""
    allocatable = {k: str(v) for k, v in spec.allocatable.items()}
    allocatable.setdefault("pods", "110")
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        **spec.labels,
    }
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {"unschedulable": spec.unschedulable} if spec.unschedulable else {},
        "status": {
            "capacity": allocatable,
            "allocatable": allocatable,
            "conditions": node_conditions(),
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": spec.name},
            ],
            # Every field a real kubelet reports: clients treat them as required.
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": spec.name,
                "containerRuntimeVersion": "process://sovereign",
                "kernelVersion": "emulated",
                "kubeProxyVersion": "",
                "kubeletVersion": "v1.33.0+sovereign-process-kubelet",
                "machineID": spec.name,
                "operatingSystem": "linux",
                "osImage": "Sovereign Hub emulated node",
                "systemUUID": spec.name,
            },
        },
    }
    if spec.taints:
        node["spec"]["taints"] = [t.model_dump(exclude_defaults=False) for t in spec.taints]
    return node
