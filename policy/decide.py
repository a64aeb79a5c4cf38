"""The policy decision: who may start what, where, on which image and GPUs.

Pure functions of their arguments (no clock, no I/O, no Kubernetes), so the
spawn form, the REST API and ``sovhub policy explain`` give the same answer
and every rule can be tested in isolation.
"""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

from .datasets import DatasetMount, dataset_mounts
from .decision import (
    LABEL_PREFIX,
    Allowed,
    Decision,
    Denied,
    Entitlements,
    GpuPlan,
    Identity,
    ImagePlan,
    NodeRequirement,
    Pin,
    PinChangeReason,
    PodPlan,
    ProfileGrant,
    Reason,
    SpawnRequest,
    Toleration,
    Usage,
)
from .model import Channel, Placement, Policy, PolicyIndex, Profile, Region


def _policy_groups(identity: Identity, index: PolicyIndex) -> list[str]:
    """The user's groups that the policy names, in document order (quota precedence)."""
    rank = index.group_rank
    return sorted((g for g in identity.groups if g in rank), key=rank.__getitem__)


def _meets(identity: Identity, region: Region) -> bool:
    return all(
        any(value in allowed for value in identity.attributes.get(attribute, ()))
        for attribute, allowed in region.require_attributes.items()
    )


def entitlements(identity: Identity, policy: Policy) -> Entitlements:
    """Profiles the user may start and the regions for each: the union of their groups' grants.

    A group grants each of its profiles in each of its regions that the profile
    allows; regions whose ``requireAttributes`` the user does not meet are left out.
    """
    regions: dict[str, set[str]] = {}
    groups: dict[str, list[str]] = {}
    index = policy.index
    for group in _policy_groups(identity, index):
        profiles, group_regions = index.grants[group]
        for name in profiles:
            usable = {
                r
                for r in policy.profiles[name].regions
                if r in group_regions and _meets(identity, policy.regions[r])
            }
            if usable:
                regions.setdefault(name, set()).update(usable)
                groups.setdefault(name, []).append(group)
    region_order = list(policy.regions)
    return Entitlements(
        tuple(
            ProfileGrant(
                profile=name,
                regions=tuple(r for r in region_order if r in regions[name]),
                groups=tuple(groups[name]),
            )
            for name in policy.profiles
            if name in regions
        )
    )


def _choose_image(name: str, channel: Channel, request: SpawnRequest) -> ImagePlan | Reason:
    versions = channel.versions
    index = channel.position
    newest = channel.newest
    current = request.pins.get(name)
    at = index.get(current.version) if current else None
    if current is not None and at is not None and versions[at].image != current.image:
        at = None  # the version was re-pointed to another digest: the pinned image is gone

    def pin_to(i: int, change: PinChangeReason | None, notice: str | None = None) -> ImagePlan:
        v = versions[i]
        moved = current is None or current.image != v.image
        pin = Pin(name, v.version, v.image, request.now) if moved or change else current
        assert pin is not None  # noqa: S101 - current is set whenever neither holds
        return ImagePlan(
            channel=name,
            version=v.version,
            image=v.image,
            pin=pin,
            previous=current,
            change=change if moved else None,
            notice=notice if moved else None,
        )

    target = index.get(request.version) if request.version is not None else None
    # Asking for the version one is already on is no request at all: it must not
    # refresh the pin's age and so escape maxPinAgeDays.
    if request.version is not None and (target is None or target != at):
        if target is None:
            offered = ", ".join(v.version for v in versions if not v.revoked)
            return Reason(
                "unknown_version",
                f"Channel {channel.display_name!r} has no version {request.version!r}; "
                f"its versions are {offered}.",
            )
        if versions[target].revoked:
            return Reason(
                "version_revoked",
                f"Version {request.version} was revoked: {versions[target].revoked}",
            )
        floor = at if at is not None else newest
        if target < floor:
            return Reason(
                "version_too_old",
                f"Version {request.version} is older than version {versions[floor].version}; "
                "you can stay on your version or move to a newer one.",
            )
        return pin_to(target, "upgrade" if current else "first")
    if current is None:
        return pin_to(newest, "first")
    if at is None:
        return pin_to(
            newest,
            "withdrawn",
            f"Version {current.version} is no longer offered in {channel.display_name}; "
            f"your server now runs version {versions[newest].version}.",
        )
    if versions[at].revoked:
        return pin_to(
            newest,
            "revoked",
            f"Version {current.version} was revoked ({versions[at].revoked}); "
            f"your server now runs version {versions[newest].version}.",
        )
    max_age = channel.max_pin_age_days
    if max_age is not None and request.now - current.pinned_at > timedelta(days=max_age):
        return pin_to(
            newest,
            "expired",
            f"Your pin to version {current.version} is older than {max_age} days, the most "
            f"{channel.display_name} allows; your server now runs version "
            f"{versions[newest].version}.",
        )
    return pin_to(at, None)


def _reserve_gpus(
    identity: Identity,
    profile: Profile,
    candidates: list[str],
    policy: Policy,
    usage: Usage,
) -> GpuPlan | Reason:
    gpu = profile.gpu
    assert gpu is not None  # noqa: S101 - only called for GPU profiles
    full: list[str] = []
    for group in candidates:
        rules = policy.groups[group]
        held = usage.group_total(group)
        if held + gpu.count > rules.gpu_quota:
            holders = usage.gpus.get(group, {})
            who = ", ".join(f"{u}: {n}" for u, n in sorted(holders.items()) if n) or "nobody"
            full.append(f"group {group!r} holds {held} of its {rules.gpu_quota}-GPU quota ({who})")
            continue
        mine = usage.held_by(group, identity.username)
        if rules.per_user_gpu_limit is not None and mine + gpu.count > rules.per_user_gpu_limit:
            full.append(
                f"you hold {mine} of your {rules.per_user_gpu_limit}-GPU limit in group {group!r}"
            )
            continue
        kind = policy.gpu_types[gpu.type]
        return GpuPlan(gpu.type, gpu.count, kind.resource, kind.product, quota_group=group)
    return Reason(
        "gpu_quota_exhausted",
        f"No GPU quota is free for {gpu.count} GPU(s): {'; '.join(full)}. "
        "Try again when a server stops, or choose a smaller profile.",
    )


def _plan(
    policy: Policy,
    name: str,
    profile: Profile,
    region: str,
    image: ImagePlan,
    gpu: GpuPlan | None,
    datasets: tuple[DatasetMount, ...],
) -> PodPlan:
    place = _placement(policy, name, region, image, gpu)
    return PodPlan(
        profile=name,
        region=region,
        image=image,
        cpu_guarantee=str(profile.cpu.guarantee),
        cpu_limit=str(profile.cpu.limit),
        memory_guarantee=str(profile.memory.guarantee),
        memory_limit=str(profile.memory.limit),
        gpu=gpu,
        node_affinity=place.node_affinity,
        tolerations=place.tolerations,
        storage_class=policy.regions[region].storage_class,
        labels=place.labels,
        environment=place.environment,
        datasets=datasets,
    )


def _placement(
    policy: Policy, name: str, region: str, image: ImagePlan, gpu: GpuPlan | None
) -> Placement:
    # Everything here follows from the key, and a policy has few profiles, regions and
    # versions: each placement is built once per policy and shared by every plan.
    key = (name, region, image.channel, image.image, image.version, gpu.type if gpu else None)
    known = policy.index.placements.get(key)
    if known is not None:
        return known
    sched = policy.scheduling
    affinity = [NodeRequirement(sched.region_label, "In", policy.regions[region].node_regions)]
    tolerations: tuple[Toleration, ...] = ()
    labels = {
        f"{LABEL_PREFIX}region": region,
        f"{LABEL_PREFIX}profile": name,
        f"{LABEL_PREFIX}channel": image.channel,
    }
    env = {
        "SOVEREIGN_HUB_REGION": region,
        "SOVEREIGN_HUB_PROFILE": name,
        "SOVEREIGN_HUB_IMAGE": image.image,
        "SOVEREIGN_HUB_IMAGE_VERSION": image.version,
    }
    if gpu is not None:
        affinity.append(NodeRequirement(sched.gpu_product_label, "In", (gpu.product,)))
        tolerations = tuple(
            Toleration(t.key, "Exists" if t.value is None else "Equal", t.effect, t.value)
            for t in sched.gpu_taints
        )
        labels[f"{LABEL_PREFIX}gpu-type"] = gpu.type
        env["SOVEREIGN_HUB_GPU_TYPE"] = gpu.type
    made = Placement(tuple(affinity), tolerations, MappingProxyType(labels), MappingProxyType(env))
    policy.index.placements[key] = made
    return made


def _deny(code: str, message: str) -> Denied:
    return Denied((Reason(code, message),))


def decide(identity: Identity, request: SpawnRequest, policy: Policy, usage: Usage) -> Decision:
    """Allow ``request`` with a :class:`PodPlan`, or deny it with reasons a user can read.

    The rules, in order: the profile must exist and one of the user's groups
    must grant it; the region (or the only one possible) must be allowed by the
    profile, granted by a group that grants the profile, and its required
    attributes met; the image follows the user's pin (see :func:`_choose_image`);
    GPUs come from the first granting group, in document order, whose quota and
    per-user limit have room. An allowed plan mounts the datasets the user's groups
    may use in the chosen region (:func:`.datasets.dataset_mounts`).
    """
    index = policy.index
    profile = policy.profiles.get(request.profile)
    mine = _policy_groups(identity, index)
    if profile is None:
        return _deny("unknown_profile", f"There is no profile {request.profile!r}.")
    grants = index.grants
    granting = [g for g in mine if request.profile in grants[g][0]]
    if not granting:
        if not mine:
            return _deny(
                "no_entitlement",
                "You are not entitled to start a server: none of your groups is named in the "
                "hub's policy.",
            )
        return _deny(
            "profile_not_entitled", f"Profile {profile.display_name!r} is not available to you."
        )
    granted = {r for g in granting for r in grants[g][1] if r in profile.regions}
    usable = [r for r in policy.regions if r in granted and _meets(identity, policy.regions[r])]
    region = request.region
    if region is None:
        if len(usable) != 1:
            return _deny(
                "region_required",
                f"Choose a region for {profile.display_name!r}: {', '.join(usable) or 'none'}.",
            )
        region = usable[0]
    if region not in policy.regions:
        return _deny("unknown_region", f"There is no region {region!r}.")
    if region not in profile.regions:
        return _deny(
            "region_not_allowed",
            f"Profile {profile.display_name!r} may not run in {region}; it may run in "
            f"{', '.join(profile.regions)}.",
        )
    if region not in granted:
        return _deny(
            "region_not_entitled",
            f"You may not run {profile.display_name!r} in {region}; you may run it in "
            f"{', '.join(usable) or 'no region'}.",
        )
    place = policy.regions[region]
    if not _meets(identity, place):
        wanted = "; ".join(
            f"{k} one of {', '.join(v)}" for k, v in place.require_attributes.items()
        )
        return _deny(
            "attribute_required",
            f"Region {place.display_name!r} requires {wanted}, which your identity does not have.",
        )
    reasons: list[Reason] = []
    image = _choose_image(profile.channel, policy.channels[profile.channel], request)
    if isinstance(image, Reason):
        reasons.append(image)
    gpu: GpuPlan | Reason | None = None
    if profile.gpu is not None:
        candidates = [g for g in granting if region in grants[g][1]]
        gpu = _reserve_gpus(identity, profile, candidates, policy, usage)
        if isinstance(gpu, Reason):
            reasons.append(gpu)
    if reasons or isinstance(image, Reason) or isinstance(gpu, Reason):
        return Denied(tuple(reasons))
    mounts = dataset_mounts(policy, mine, region) if policy.datasets else ()
    return Allowed(_plan(policy, request.profile, profile, region, image, gpu, mounts))
