"""What a user is entitled to and what a request would get, as JSON-ready data and as text."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .datasets import dataset_mounts
from .decision import Allowed, Decision, Entitlements, Identity, PodPlan, SpawnRequest
from .load import LoadedPolicy
from .sharing import sharing_rights


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list | frozenset):
        return [_plain(v) for v in value]
    return value


def plan_to_json(plan: PodPlan) -> dict[str, Any]:
    """A plan as JSON-safe data (the shape ``--json`` prints and the docs describe)."""
    plain: dict[str, Any] = _plain(plan)  # a dataclass becomes a dict
    return plain


def explanation(
    loaded: LoadedPolicy,
    identity: Identity,
    granted: Entitlements,
    request: SpawnRequest | None,
    decision: Decision | None,
) -> dict[str, Any]:
    policy = loaded.policy
    out: dict[str, Any] = {
        "policy": {"file": loaded.source, "sha256": loaded.sha256},
        "user": identity.username,
        "groups": sorted(identity.groups),
        "policyGroups": sorted(g for g in identity.groups if g in policy.index.group_rank),
        "attributes": {k: list(v) for k, v in identity.attributes.items()},
        "entitlements": [],
    }
    for grant in granted.grants:
        profile = policy.profiles[grant.profile]
        channel = policy.channels[profile.channel]
        newest = next(v for v in reversed(channel.versions) if not v.revoked)
        out["entitlements"].append(
            {
                "profile": grant.profile,
                "displayName": profile.display_name,
                "regions": list(grant.regions),
                "viaGroups": list(grant.groups),
                "cpu": {"guarantee": str(profile.cpu.guarantee), "limit": str(profile.cpu.limit)},
                "memory": {
                    "guarantee": str(profile.memory.guarantee),
                    "limit": str(profile.memory.limit),
                },
                "gpu": (
                    {"count": profile.gpu.count, "type": profile.gpu.type} if profile.gpu else None
                ),
                "channel": profile.channel,
                "newestVersion": newest.version,
                "datasets": {
                    region: [
                        {"dataset": m.dataset, "mountPath": m.mount_path, "mode": m.mode}
                        for m in dataset_mounts(policy, identity.groups, region)
                    ]
                    for region in grant.regions
                },
            }
        )
    rights = sharing_rights(policy, identity.username, tuple(identity.groups))
    out["sharing"] = {
        "mayShare": bool(rights.via_groups),
        "viaGroups": list(rights.via_groups),
        "maxMinutes": rights.max_minutes,
        "withGroupsByRegion": {r: list(g) for r, g in rights.recipients.items()},
        "withUsers": list(rights.users),
        "receiveFrom": list(rights.receive_from),
        "receiveRegions": list(rights.receive_regions),
    }
    if request is not None and decision is not None:
        out["request"] = {
            "profile": request.profile,
            "region": request.region,
            "version": request.version,
        }
        if isinstance(decision, Allowed):
            out["decision"] = {"allowed": True, "plan": plan_to_json(decision.plan)}
        else:
            out["decision"] = {
                "allowed": False,
                "reasons": [{"code": r.code, "message": r.message} for r in decision.reasons],
            }
    return out


def _sharing_lines(sharing: dict[str, Any]) -> list[str]:
    if not sharing["mayShare"]:
        lines = ["  sharing: may not share servers (no sharing rule for these groups)"]
    else:
        lines = [
            f"  sharing: may share running servers for up to {sharing['maxMinutes']} minutes "
            f"(via {', '.join(sharing['viaGroups'])})"
        ]
        for region, groups in sharing["withGroupsByRegion"].items():
            named = f"groups {', '.join(groups)}" if groups else "no group"
            lines.append(f"    a server in {region}: with {named}")
        if sharing["withUsers"]:
            lines.append(
                f"    and users {', '.join(sharing['withUsers'])}, each only if entitled to "
                "the server's region"
            )
    if sharing["receiveFrom"]:
        lines.append(
            f"  may receive shares from members of {', '.join(sharing['receiveFrom'])}, of "
            f"servers in {', '.join(sharing['receiveRegions']) or 'no region (none entitled)'}"
        )
    else:
        lines.append("  may receive no shares (no sharing rule names this user or their groups)")
    return lines


def render_text(data: dict[str, Any]) -> str:
    lines = [
        f"user {data['user']}: groups {', '.join(data['groups']) or '(none)'}; "
        f"named in the policy: {', '.join(data['policyGroups']) or '(none)'}",
    ]
    if not data["entitlements"]:
        lines.append("  entitled to nothing: no group of this user grants a profile")
    for e in data["entitlements"]:
        gpu = f", {e['gpu']['count']}x GPU {e['gpu']['type']}" if e["gpu"] else ""
        lines.append(
            f"  {e['profile']}: {e['displayName']} - "
            f"cpu {e['cpu']['guarantee']}..{e['cpu']['limit']}, "
            f"memory {e['memory']['guarantee']}..{e['memory']['limit']}{gpu}; "
            f"regions {', '.join(e['regions'])}; image {e['channel']} {e['newestVersion']}; "
            f"via {', '.join(e['viaGroups'])}"
        )
        for region, mounts in e["datasets"].items():
            if mounts:
                listed = ", ".join(f"{m['dataset']} ({m['mode']})" for m in mounts)
                lines.append(f"    datasets in {region}: {listed}")
    lines.extend(_sharing_lines(data["sharing"]))
    decision = data.get("decision")
    if decision is None:
        return "\n".join(lines)
    req = data["request"]
    lines.append(f"request: profile {req['profile']}, region {req['region'] or '(any)'}")
    if not decision["allowed"]:
        lines.append("  DENIED")
        lines.extend(f"  - [{r['code']}] {r['message']}" for r in decision["reasons"])
        return "\n".join(lines)
    plan = decision["plan"]
    image = plan["image"]
    lines.append("  ALLOWED")
    lines.append(f"  image:     {image['image']} ({image['channel']} {image['version']})")
    lines.append(f"  region:    {plan['region']} (storage class {plan['storage_class']})")
    lines.append(
        f"  cpu:       {plan['cpu_guarantee']}..{plan['cpu_limit']}   "
        f"memory: {plan['memory_guarantee']}..{plan['memory_limit']}"
    )
    if plan["gpu"]:
        gpu = plan["gpu"]
        lines.append(
            f"  gpu:       {gpu['count']}x {gpu['resource']} ({gpu['product']}), "
            f"quota of group {gpu['quota_group']}"
        )
    for req_ in plan["node_affinity"]:
        lines.append(f"  affinity:  {req_['key']} {req_['operator']} {', '.join(req_['values'])}")
    for tol in plan["tolerations"]:
        lines.append(f"  tolerates: {tol['key']} {tol['operator']} {tol['effect']}")
    for m in plan["datasets"]:
        lines.append(
            f"  dataset:   {m['dataset']} at {m['mount_path']} ({m['mode']}, "
            f"{m['source_kind']} in {m['region']})"
        )
    return "\n".join(lines)
