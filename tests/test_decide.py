"""The policy decision, rule by rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sovereign_hub.policy import (
    Allowed,
    Denied,
    Identity,
    NodeRequirement,
    Pin,
    SpawnRequest,
    Toleration,
    Usage,
    decide,
    entitlements,
)
from tests.policies import D1, D2, D3, DG, TEXT, policy

NOW = datetime(2026, 6, 1, tzinfo=UTC)
P = policy()
EU = {"country": ("DE",)}


def who(*groups: str, name: str = "ana", **attrs: tuple[str, ...]) -> Identity:
    return Identity(name, frozenset(groups), attrs or EU)


def ask(profile: str, **kw) -> SpawnRequest:
    return SpawnRequest(profile=profile, now=NOW, **kw)


def allowed(decision) -> Allowed:
    assert isinstance(decision, Allowed), decision
    return decision


def denied(decision) -> Denied:
    assert isinstance(decision, Denied), decision
    return decision


def test_entitlements_are_the_union_of_group_grants_in_policy_order():
    granted = entitlements(who("us-analysts", "eu-research", "unrelated"), P)
    assert [(g.profile, g.regions, g.groups) for g in granted.grants] == [
        ("cpu", ("eu", "us"), ("eu-research", "us-analysts")),
        ("gpu2", ("eu",), ("eu-research",)),
        ("slice", ("eu",), ("eu-research",)),
    ]


def test_entitlement_pairs_profile_and_region_within_one_group():
    # us-analysts grants region us, eu-research grants gpu2 only in eu: being in
    # both must not allow gpu2 in us.
    d = denied(decide(who("us-analysts", "eu-research"), ask("gpu2", region="us"), P, Usage()))
    assert d.reasons[0].code == "region_not_entitled"


def test_required_attributes_hide_a_region():
    granted = entitlements(who("eu-research", "us-analysts", country=("US",)), P)
    assert granted.get("cpu").regions == ("us",)  # type: ignore[union-attr]
    assert granted.get("gpu2") is None


@pytest.mark.parametrize(
    ("identity", "request_", "code"),
    [
        (who(), ask("cpu"), "no_entitlement"),
        (who("unknown-group"), ask("cpu"), "no_entitlement"),
        (who("us-analysts"), ask("gpu2"), "profile_not_entitled"),
        (who("us-analysts"), ask("nope"), "unknown_profile"),
        (who("eu-research", "us-analysts"), ask("cpu"), "region_required"),
        (who("eu-research"), ask("cpu", region="mars"), "unknown_region"),
        (who("eu-research"), ask("slice", region="us"), "region_not_allowed"),
        (who("us-analysts"), ask("cpu", region="eu"), "region_not_entitled"),
        (who("eu-research", country=("US",)), ask("cpu", region="eu"), "attribute_required"),
        (who("eu-research"), ask("cpu", version="9"), "unknown_version"),
    ],
)
def test_denials_carry_a_stable_code_and_a_message(identity, request_, code):
    d = denied(decide(identity, request_, P, Usage()))
    assert [r.code for r in d.reasons] == [code]
    # A sentence for a person, not an exception's repr.
    assert d.reasons[0].message[0].isupper()
    assert d.reasons[0].message.endswith(".")


def test_attribute_denial_names_the_requirement():
    d = denied(decide(who("eu-research", country=("US",)), ask("cpu", region="eu"), P, Usage()))
    assert "country one of DE, FR, NL" in d.message


def test_only_possible_region_is_chosen_for_the_user():
    plan = allowed(decide(who("eu-research"), ask("cpu"), P, Usage())).plan
    assert plan.region == "eu"


def test_cpu_plan_has_region_affinity_and_no_gpu_settings():
    plan = allowed(decide(who("eu-research"), ask("cpu"), P, Usage())).plan
    assert plan.gpu is None
    assert plan.tolerations == ()
    assert plan.node_affinity == (
        NodeRequirement("topology.kubernetes.io/region", "In", ("eu-central-1", "eu-west-1")),
    )
    assert plan.storage_class == "ssd-eu"
    assert (plan.cpu_guarantee, plan.cpu_limit) == ("500m", "2")
    assert (plan.memory_guarantee, plan.memory_limit) == ("1Gi", "2Gi")
    assert plan.labels == {
        "sovereign-hub.io/region": "eu",
        "sovereign-hub.io/profile": "cpu",
        "sovereign-hub.io/channel": "ds",
    }
    assert plan.environment["SOVEREIGN_HUB_REGION"] == "eu"
    assert "SOVEREIGN_HUB_GPU_TYPE" not in plan.environment


def test_gpu_plan_sets_resource_product_affinity_and_taint_toleration():
    plan = allowed(decide(who("eu-research"), ask("gpu2"), P, Usage())).plan
    assert plan.gpu is not None
    assert (plan.gpu.resource, plan.gpu.count, plan.gpu.product) == (
        "nvidia.com/gpu",
        2,
        "NVIDIA-A100",
    )
    assert NodeRequirement("nvidia.com/gpu.product", "In", ("NVIDIA-A100",)) in plan.node_affinity
    assert plan.tolerations == (Toleration("nvidia.com/gpu", "Exists", "NoSchedule"),)
    assert plan.labels["sovereign-hub.io/gpu-type"] == "a100"


def test_mig_profile_requests_the_mig_resource():
    plan = allowed(decide(who("eu-research"), ask("slice"), P, Usage())).plan
    assert plan.gpu is not None
    assert plan.gpu.resource == "nvidia.com/mig-1g.5gb"


class TestQuota:
    def test_spawn_draws_on_first_group_in_document_order(self):
        plan = allowed(
            decide(who("gpu-pool", "eu-research"), ask("gpu2", region="eu"), P, Usage())
        ).plan
        assert plan.gpu is not None
        assert plan.gpu.quota_group == "eu-research"

    def test_falls_through_to_next_group_when_first_is_full(self):
        usage = Usage({"eu-research": {"bob": 2, "cy": 2}})
        plan = allowed(
            decide(who("eu-research", "gpu-pool"), ask("gpu2", region="eu"), P, usage)
        ).plan
        assert plan.gpu is not None
        assert plan.gpu.quota_group == "gpu-pool"

    def test_group_quota_exhausted_names_quota_and_holders(self):
        usage = Usage({"eu-research": {"bob": 2, "cy": 2}})
        d = denied(decide(who("eu-research"), ask("gpu2"), P, usage))
        assert d.reasons[0].code == "gpu_quota_exhausted"
        assert "group 'eu-research' holds 4 of its 4-GPU quota (bob: 2, cy: 2)" in d.message

    def test_per_user_limit(self):
        usage = Usage({"eu-research": {"ana": 1}})
        d = denied(decide(who("eu-research"), ask("gpu2"), P, usage))
        assert "you hold 1 of your 2-GPU limit in group 'eu-research'" in d.message

    def test_group_granting_profile_but_not_region_is_not_a_candidate(self):
        # eu-research grants gpu2 only in eu; in us only gpu-pool can pay.
        usage = Usage({"gpu-pool": {"x": 8}})
        d = denied(decide(who("eu-research", "gpu-pool"), ask("gpu2", region="us"), P, usage))
        assert "gpu-pool" in d.message
        assert "eu-research" not in d.message

    def test_cpu_profile_ignores_gpu_quota(self):
        usage = Usage({"eu-research": {"bob": 4}})
        allowed(decide(who("eu-research"), ask("cpu"), P, usage))


class TestPinning:
    def pin(self, image: str, version: str, days_ago: int = 1) -> dict[str, Pin]:
        return {"ds": Pin("ds", version, image, NOW - timedelta(days=days_ago))}

    def image(self, **kw):
        return allowed(decide(who("eu-research"), ask("cpu", **kw), P, Usage())).plan.image

    def test_first_spawn_pins_the_newest_version(self):
        image = self.image()
        assert (image.version, image.image, image.change) == ("3", D3, "first")
        assert image.pin == Pin("ds", "3", D3, NOW)

    def test_existing_pin_is_kept_even_when_newer_exists(self):
        pins = self.pin(D1, "1", days_ago=10)
        image = self.image(pins=pins)
        assert (image.image, image.change, image.notice) == (D1, None, None)
        assert image.pin == pins["ds"]  # pinned_at unchanged

    def test_user_upgrade_moves_the_pin(self):
        image = self.image(pins=self.pin(D1, "1"), version="3")
        assert (image.image, image.change) == (D3, "upgrade")
        assert image.previous is not None
        assert image.previous.image == D1

    def test_downgrade_is_refused(self):
        d = denied(
            decide(who("eu-research"), ask("cpu", pins=self.pin(D2, "2"), version="1"), P, Usage())
        )
        assert d.reasons[0].code == "version_too_old"

    def test_expired_pin_moves_with_a_notice(self):
        image = self.image(pins=self.pin(D1, "1", days_ago=31))
        assert (image.image, image.change) == (D3, "expired")
        assert image.notice
        assert "older than 30 days" in image.notice

    def test_reselecting_current_version_does_not_renew_an_expired_pin(self):
        image = self.image(pins=self.pin(D1, "1", days_ago=31), version="1")
        assert (image.image, image.change) == (D3, "expired")

    def test_expired_pin_on_newest_is_renewed_without_a_change(self):
        image = self.image(pins=self.pin(D3, "3", days_ago=31))
        assert (image.image, image.change) == (D3, None)
        assert image.pin.pinned_at == NOW

    def test_revoked_version_moves_with_the_reason(self):
        text = TEXT.replace(
            f'image: "{D1}", released: 2026-01-01}}',
            f'image: "{D1}", released: 2026-01-01, revoked: "CVE-2026-42 in libfoo"}}',
        )
        revoked = policy(text)
        image = allowed(
            decide(who("eu-research"), ask("cpu", pins=self.pin(D1, "1")), revoked, Usage())
        ).plan.image
        assert (image.image, image.change) == (D3, "revoked")
        assert image.notice
        assert "CVE-2026-42 in libfoo" in image.notice
        d = denied(decide(who("eu-research"), ask("cpu", version="1"), revoked, Usage()))
        assert d.reasons[0].code == "version_revoked"

    def test_withdrawn_or_repointed_version_moves(self):
        image = self.image(pins=self.pin("registry.example/ds@sha256:" + "f" * 64, "2"))
        assert (image.image, image.change) == (D3, "withdrawn")

    def test_pins_are_per_channel(self):
        pins = self.pin(D1, "1")
        plan = allowed(decide(who("eu-research"), ask("slice", pins=pins), P, Usage())).plan
        assert plan.image.image == DG
        assert plan.image.change == "first"

    def test_pin_round_trips_through_state(self):
        pin = Pin("ds", "1", D1, NOW)
        assert Pin.from_state(pin.to_state()) == pin


def test_several_reasons_are_reported_together():
    usage = Usage({"eu-research": {"x": 4}})
    d = denied(decide(who("eu-research"), ask("slice", version="nope"), P, usage))
    assert [r.code for r in d.reasons] == ["unknown_version", "gpu_quota_exhausted"]
