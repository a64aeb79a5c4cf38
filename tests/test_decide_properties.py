"""Properties of decide() that must hold for every identity, request and usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sovereign_hub.policy import Allowed, Identity, Pin, SpawnRequest, Usage, decide, entitlements
from tests.conftest import examples
from tests.policies import D1, D2, D3, DG, policy

P = policy()
NOW = datetime(2026, 6, 1, tzinfo=UTC)
GROUPS = [*P.groups, "staff", "admins"]
USERS = ["ana", "bob", "cy"]

identities = st.builds(
    Identity,
    username=st.sampled_from(USERS),
    groups=st.frozensets(st.sampled_from(GROUPS), max_size=4),
    attributes=st.one_of(
        st.just({}),
        st.fixed_dictionaries({"country": st.tuples(st.sampled_from(["DE", "US", "FR", "XX"]))}),
    ),
)
pins = st.dictionaries(
    st.just("ds"),
    st.builds(
        lambda image, version, age: Pin("ds", version, image, NOW - timedelta(days=age)),
        st.sampled_from([D1, D2, D3, "registry.example/ds@sha256:" + "e" * 64]),
        st.sampled_from(["1", "2", "3"]),
        st.integers(0, 60),
    ),
)
requests = st.builds(
    SpawnRequest,
    profile=st.sampled_from([*P.profiles, "nope"]),
    now=st.just(NOW),
    region=st.sampled_from([None, *P.regions, "mars"]),
    version=st.sampled_from([None, "1", "2", "3", "9"]),
    pins=pins,
)
usages = st.builds(
    Usage,
    st.dictionaries(
        st.sampled_from(list(P.groups)),
        st.dictionaries(st.sampled_from(USERS), st.integers(0, 4)),
    ),
)


@settings(max_examples=examples(2000), deadline=None)
@given(identities, requests, usages)
def test_allowed_plans_respect_residency_images_and_quota(identity, request, usage):
    decision = decide(identity, request, P, usage)
    grant = entitlements(identity, P).get(request.profile)
    if not isinstance(decision, Allowed):
        assert decision.reasons
        return
    plan = decision.plan
    profile = P.profiles[request.profile]
    # Residency: within both the profile's regions and the user's entitlement.
    assert grant is not None
    assert plan.region in profile.regions
    assert plan.region in grant.regions
    assert plan.node_affinity[0].values == P.regions[plan.region].node_regions
    # Image: a non-revoked digest of the profile's channel.
    channel = P.channels[profile.channel]
    assert plan.image.image in {v.image for v in channel.versions if not v.revoked}
    assert "@sha256:" in plan.image.image
    # GPUs: within the drawing group's remaining quota and the user's limit.
    if profile.gpu is None:
        assert plan.gpu is None
        assert not plan.tolerations
    else:
        assert plan.gpu is not None
        assert plan.gpu.count == profile.gpu.count
        rules = P.groups[plan.gpu.quota_group]
        assert plan.gpu.quota_group in identity.groups
        assert usage.group_total(plan.gpu.quota_group) + plan.gpu.count <= rules.gpu_quota
        if rules.per_user_gpu_limit is not None:
            held = usage.held_by(plan.gpu.quota_group, identity.username)
            assert held + plan.gpu.count <= rules.per_user_gpu_limit


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.tuples(identities, st.sampled_from(["gpu2", "slice"])), max_size=30))
def test_admitting_requests_one_by_one_never_exceeds_any_quota(queue):
    held: dict[str, dict[str, int]] = {}
    for identity, profile in queue:
        decision = decide(identity, SpawnRequest(profile, NOW), P, Usage(held))
        if isinstance(decision, Allowed) and decision.plan.gpu is not None:
            gpu = decision.plan.gpu
            users = held.setdefault(gpu.quota_group, {})
            users[identity.username] = users.get(identity.username, 0) + gpu.count
    for group, users in held.items():
        assert sum(users.values()) <= P.groups[group].gpu_quota
        limit = P.groups[group].per_user_gpu_limit
        assert limit is None or max(users.values()) <= limit


@settings(max_examples=examples(300), deadline=None)
@given(identities, requests, usages)
def test_decide_is_a_pure_function(identity, request, usage):
    assert decide(identity, request, P, usage) == decide(identity, request, P, usage)


def test_torch_channel_digest_is_reachable():
    # Guards the strategies above: the GPU channel's only image must be reachable.
    identity = Identity("ana", frozenset({"eu-research"}), {"country": ("DE",)})
    decision = decide(identity, SpawnRequest("slice", NOW), P, Usage())
    assert isinstance(decision, Allowed)
    assert decision.plan.image.image == DG
