"""A pod plan as KubeSpawner settings, layered over the admin's own configuration.

Pure: given the plan and the admin's baseline values of the traits Sovereign
Hub manages, return the value of each managed trait for this spawn. Every
managed trait is recomputed from the baseline on every spawn, so nothing of an
earlier spawn (a GPU, a region) can leak into the next one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sovereign_hub.policy import PodPlan
from sovereign_hub.policy.datasets import DatasetMount
from sovereign_hub.policy.decision import LABEL_PREFIX
from sovereign_hub.policy.quantity import parse_quantity

MANAGED_TRAITS = (
    "image",
    "cpu_guarantee",
    "cpu_limit",
    "mem_guarantee",
    "mem_limit",
    "extra_resource_guarantees",
    "extra_resource_limits",
    "node_affinity_required",
    "tolerations",
    "extra_labels",
    "extra_annotations",
    "environment",
    "volumes",
    "volume_mounts",
)
HOME_VOLUME = "sovereign-home"
DATASET_VOLUME_PREFIX = "sovereign-dataset-"
"""Volumes of policy datasets are named this plus the dataset's name (at most 58 characters)."""
NFS_CSI_DRIVER = "nfs.csi.k8s.io"
"""NFS sources are inline volumes of the NFS CSI driver: the restricted Pod Security
Standard refuses the ``nfs`` volume type, and allows ``csi``."""
DIGEST_ANNOTATION = f"{LABEL_PREFIX}image-digest"


@dataclass(frozen=True, slots=True)
class Home:
    claim_name: str
    """The home's PersistentVolumeClaim; empty for an emptyDir home (no persistent storage)."""
    mount_path: str

    def volume(self) -> dict[str, Any]:
        if not self.claim_name:
            return {"name": HOME_VOLUME, "emptyDir": {}}
        return {"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": self.claim_name}}


def as_list(value: Any) -> list[Any]:
    """KubeSpawner accepts lists or dicts (values taken in key order) for these traits."""
    if not value:
        return []
    if isinstance(value, Mapping):
        return [copy.deepcopy(value[k]) for k in sorted(value)]
    return copy.deepcopy(list(value))


def _required_terms(baseline: Any, ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Terms are ORed and expressions within a term ANDed: our requirements
    # must hold in every admin term, so add them to each.
    terms = as_list(baseline) or [{}]
    out = []
    for term in terms:
        term = dict(term)
        term["matchExpressions"] = [*term.get("matchExpressions", []), *ours]
        out.append(term)
    return out


def dataset_volume(mount: DatasetMount) -> dict[str, Any]:
    """The pod volume of one dataset mount; read-only mounts are read-only at the source too."""
    source = mount.source
    read_only = {"readOnly": True} if mount.read_only else {}
    body: dict[str, Any]
    if mount.source_kind == "persistentVolumeClaim":
        body = {"persistentVolumeClaim": {"claimName": source["claimName"], **read_only}}
    elif mount.source_kind == "nfs":
        attributes = {"server": source["server"], "share": source["path"]}
        body = {"csi": {"driver": NFS_CSI_DRIVER, **read_only, "volumeAttributes": attributes}}
    else:
        csi: dict[str, Any] = {"driver": source["driver"], **read_only}
        if source.get("volumeAttributes"):
            csi["volumeAttributes"] = dict(source["volumeAttributes"])
        if source.get("nodePublishSecretName"):
            csi["nodePublishSecretRef"] = {"name": source["nodePublishSecretName"]}
        body = {"csi": csi}
    return {"name": DATASET_VOLUME_PREFIX + mount.dataset, **body}


def mount_records(plan: PodPlan) -> list[dict[str, str]]:
    """What the audit trail records of each dataset ``plan`` mounts (``dataset_mounted``):
    never the source's settings, which may name buckets or credential secrets."""
    return [
        {
            "profile": plan.profile,
            "region": m.region,
            "dataset": m.dataset,
            "mode": m.mode,
            "mount_path": m.mount_path,
            "source": m.source_kind,
        }
        for m in plan.datasets
    ]


class MountConflict(ValueError):
    """Two volumes of one pod would be mounted at the same path (Kubernetes refuses that)."""


def _one_volume_per_path(mounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, str] = {}
    for mount in mounts:
        path, name = mount["mountPath"], mount["name"]
        other = seen.setdefault(path, name)
        if other != name:
            raise MountConflict(
                f"volumes {other!r} and {name!r} would both be mounted at {path}; a policy "
                f"dataset's volume is named {DATASET_VOLUME_PREFIX}<dataset>: change that "
                "dataset's mountPath in the policy, or SovereignSpawner.home_mount_path or "
                "KubeSpawner.volume_mounts"
            )
    return mounts


def _ours(entry: Mapping[str, Any]) -> bool:
    name = str(entry.get("name", ""))
    return name == HOME_VOLUME or name.startswith(DATASET_VOLUME_PREFIX)


def plan_traits(plan: PodPlan, baseline: Mapping[str, Any], home: Home) -> dict[str, Any]:
    """The value of every trait in :data:`MANAGED_TRAITS` for ``plan``."""
    gpu = {plan.gpu.resource: str(plan.gpu.count)} if plan.gpu else {}
    expressions = [
        {"key": r.key, "operator": r.operator, "values": list(r.values)} for r in plan.node_affinity
    ]
    tolerations = as_list(baseline.get("tolerations"))
    for t in plan.tolerations:
        toleration = {"key": t.key, "operator": t.operator, "effect": t.effect}
        if t.value is not None:
            toleration["value"] = t.value
        if toleration not in tolerations:
            tolerations.append(toleration)
    annotations = {
        **(baseline.get("extra_annotations") or {}),
        DIGEST_ANNOTATION: plan.image.digest,
        f"{LABEL_PREFIX}image": plan.image.image,
        f"{LABEL_PREFIX}image-version": plan.image.version,
    }
    if plan.gpu:
        annotations[f"{LABEL_PREFIX}gpu-quota-group"] = plan.gpu.quota_group
    volumes = [v for v in as_list(baseline.get("volumes")) if not _ours(v)]
    mounts = [m for m in as_list(baseline.get("volume_mounts")) if not _ours(m)]
    return {
        "image": plan.image.image,
        "cpu_guarantee": float(parse_quantity(plan.cpu_guarantee)),
        "cpu_limit": float(parse_quantity(plan.cpu_limit)),
        "mem_guarantee": int(parse_quantity(plan.memory_guarantee)),
        "mem_limit": int(parse_quantity(plan.memory_limit)),
        "extra_resource_guarantees": {**(baseline.get("extra_resource_guarantees") or {}), **gpu},
        "extra_resource_limits": {**(baseline.get("extra_resource_limits") or {}), **gpu},
        "node_affinity_required": _required_terms(
            baseline.get("node_affinity_required"), expressions
        ),
        "tolerations": tolerations,
        "extra_labels": {**(baseline.get("extra_labels") or {}), **plan.labels},
        "extra_annotations": annotations,
        "environment": {**(baseline.get("environment") or {}), **plan.environment},
        "volumes": [
            *volumes,
            home.volume(),
            *(dataset_volume(m) for m in plan.datasets),
        ],
        "volume_mounts": _one_volume_per_path(
            [
                *mounts,
                {"name": HOME_VOLUME, "mountPath": home.mount_path},
                *(
                    {
                        "name": DATASET_VOLUME_PREFIX + m.dataset,
                        "mountPath": m.mount_path,
                        "readOnly": m.read_only,
                    }
                    for m in plan.datasets
                ),
            ]
        ),
    }
