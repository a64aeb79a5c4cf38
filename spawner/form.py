"""The spawn form: what the user is entitled to, their pinned versions, and what would change."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from sovereign_hub.images.reference import digest_of
from sovereign_hub.policy import (
    Allowed,
    Identity,
    Pin,
    Policy,
    SpawnRequest,
    Usage,
    decide,
    entitlements,
)
from sovereign_hub.policy.datasets import dataset_mounts
from sovereign_hub.policy.quantity import parse_quantity

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _cpu(guarantee: str, limit: str) -> str:
    most, least = parse_quantity(limit).normalize(), parse_quantity(guarantee).normalize()
    return f"{most:f} cores ({least:f} guaranteed)"


def _memory(guarantee: str, limit: str) -> str:
    def gib(text: str) -> str:
        value = parse_quantity(text) / 2**30
        return f"{value.normalize():f} GiB" if value >= 1 else f"{(value * 1024).normalize():f} MiB"

    return f"{gib(limit)} ({gib(guarantee)} guaranteed)"


def _datasets(policy: Policy, groups: frozenset[str], regions: tuple[str, ...]) -> list[Any]:
    """Per region the profile may run in, the datasets a server there would mount."""
    out = []
    for region in regions:
        mounts = [
            {
                "display_name": policy.datasets[m.dataset].display_name,
                "mount_path": m.mount_path,
                "mode": m.mode,
            }
            for m in dataset_mounts(policy, groups, region)
        ]
        if mounts:
            out.append({"region": policy.regions[region].display_name, "mounts": mounts})
    return out


def form_context(
    identity: Identity,
    policy: Policy,
    pins: Mapping[str, Pin],
    usage: Usage,
    now: datetime,
    no_access_message: str,
    last_profile: str | None = None,
) -> dict[str, Any]:
    granted = entitlements(identity, policy)
    profiles = []
    for grant in granted.grants:
        profile = policy.profiles[grant.profile]
        channel = policy.channels[profile.channel]
        versions = channel.versions
        decision = decide(
            identity,
            SpawnRequest(grant.profile, now, region=grant.regions[0], pins=pins),
            policy,
            usage,
        )
        pin = pins.get(profile.channel)
        if isinstance(decision, Allowed):
            image = decision.plan.image
            current = {
                "version": image.version,
                "pinned": pin.pinned_at.date().isoformat() if pin and not image.change else None,
            }
            notice = image.notice
            unavailable = None
        else:
            newest = next(v for v in reversed(versions) if not v.revoked)
            current = {"version": pin.version if pin else newest.version, "pinned": None}
            notice = None
            unavailable = " ".join(r.message for r in decision.reasons)
        index = (
            [v.version for v in versions].index(current["version"])
            if current["version"] in [v.version for v in versions]
            else len(versions) - 1
        )
        newer = [
            {
                "version": v.version,
                "released": v.released.isoformat(),
                "digest_short": digest_of(v.image)[:19],
            }
            for v in versions[index + 1 :]
            if not v.revoked
        ]
        gpu = None
        if profile.gpu:
            kind = policy.gpu_types[profile.gpu.type]
            gpu = f"{profile.gpu.count} × {kind.display_name}"
        profiles.append(
            {
                "slug": grant.profile,
                "display_name": profile.display_name,
                "description": profile.description,
                "cpu": _cpu(str(profile.cpu.guarantee), str(profile.cpu.limit)),
                "memory": _memory(str(profile.memory.guarantee), str(profile.memory.limit)),
                "gpu": gpu,
                "regions": [
                    {"slug": r, "display_name": policy.regions[r].display_name}
                    for r in grant.regions
                ],
                "datasets": _datasets(policy, identity.groups, grant.regions),
                "channel": channel.display_name,
                "current": current,
                "newer": newer,
                "notice": notice,
                "unavailable": unavailable,
                "checked": False,
            }
        )
    if profiles:
        chosen = next((p for p in profiles if p["slug"] == last_profile), profiles[0])
        chosen["checked"] = True
    return {
        "profiles": profiles,
        "account": identity.username,
        "groups": sorted(identity.groups),
        "no_access_message": no_access_message,
        "contact": None,
        "logout_url": "",
    }


def render_form(context: Mapping[str, Any]) -> str:
    return _env.get_template("options_form.html").render(**context)
