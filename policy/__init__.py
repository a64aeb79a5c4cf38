"""The policy document and the pure decision made from it.

Nothing here talks to Kubernetes, the hub or the network; the spawner,
the spawn form, the REST API and the CLI all call :func:`decide`.
"""

from .decide import decide, entitlements
from .decision import (
    Allowed,
    Decision,
    Denied,
    Entitlements,
    GpuPlan,
    Identity,
    ImagePlan,
    NodeRequirement,
    Pin,
    PodPlan,
    ProfileGrant,
    Reason,
    SpawnRequest,
    Toleration,
    Usage,
)
from .load import LoadedPolicy, cached_policy, load_policy, parse_policy
from .model import HUB_CLUSTER, Cluster, Policy, Region
from .outlook import NewerVersion, PinOutlook, pin_outlook, upgrade_refusal
from .problems import PolicyError, Problem

__all__ = [
    "HUB_CLUSTER",
    "Allowed",
    "Cluster",
    "Decision",
    "Denied",
    "Entitlements",
    "GpuPlan",
    "Identity",
    "ImagePlan",
    "LoadedPolicy",
    "NewerVersion",
    "NodeRequirement",
    "Pin",
    "PinOutlook",
    "PodPlan",
    "Policy",
    "PolicyError",
    "Problem",
    "ProfileGrant",
    "Reason",
    "Region",
    "SpawnRequest",
    "Toleration",
    "Usage",
    "cached_policy",
    "decide",
    "entitlements",
    "load_policy",
    "parse_policy",
    "pin_outlook",
    "upgrade_refusal",
]
