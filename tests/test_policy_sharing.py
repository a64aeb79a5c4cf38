"""The sharing section and its pure decision (policy/sharing.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sovereign_hub.policy import PolicyError, load_policy, parse_policy
from sovereign_hub.policy.sharing import Recipient, share_expires, share_refusal
from tests.conftest import ROOT

POLICY = load_policy(ROOT / "examples" / "policy.yaml").policy
EU, US = ("eu-researchers",), ("us-analysts",)


@pytest.mark.parametrize(
    ("owner_groups", "region", "recipient", "code", "says"),
    [
        # an EU researcher shares with an EU colleague, or with the group
        (EU, "eu", Recipient("user", "carla", EU), None, None),
        (EU, "eu", Recipient("group", "eu-researchers"), None, None),
        # analysts have no sharing rule
        (US, "us", Recipient("user", "dan", US), "not_permitted", "us-analysts"),
        # allowed as a group, but not entitled to the server's region
        (EU, "eu", Recipient("user", "bob", US), "region_not_entitled", "region 'eu'"),
        (EU, "eu", Recipient("group", "us-analysts"), "region_not_entitled", "European Union"),
        # not named by the rule at all
        (EU, "eu", Recipient("user", "eve", ("contractors",)), "recipient_not_allowed", "group"),
        (EU, "eu", Recipient("group", "contractors"), "recipient_not_allowed", "eu-researchers"),
        # a user in no group
        ((), "eu", Recipient("user", "carla", EU), "not_permitted", "your groups"),
    ],
)
def test_share_refusal_follows_the_rules_in_order(owner_groups, region, recipient, code, says):
    refused = share_refusal(POLICY, owner_groups=owner_groups, region=region, recipient=recipient)
    if code is None:
        assert refused is None
    else:
        assert refused is not None
        assert refused.code == code
        assert says in refused.message


def test_a_user_named_by_the_rule_still_needs_the_region():
    doc = (ROOT / "examples" / "policy.yaml").read_text()
    doc = doc.replace("withGroups: [eu-researchers, us-analysts]", "withUsers: [bob, carla]")
    policy = parse_policy(doc.encode(), "p.yaml").policy
    bob = Recipient("user", "bob", US)
    carla = Recipient("user", "carla", EU)
    assert share_refusal(policy, owner_groups=EU, region="eu", recipient=carla) is None
    refused = share_refusal(policy, owner_groups=EU, region="eu", recipient=bob)
    assert refused is not None
    assert refused.code == "region_not_entitled"
    # bob may receive a share of a US server (his region) from an EU researcher's rule
    assert share_refusal(policy, owner_groups=EU, region="us", recipient=bob) is None


def test_shares_end_after_the_policy_maximum():
    created = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert share_expires(POLICY, created) == created + timedelta(minutes=480)


@pytest.mark.parametrize(
    ("section", "says"),
    [
        ("sharing:\n  maxMinutes: 0\n", "maxMinutes"),
        ("sharing:\n  maxMinutes: 50000\n", "maxMinutes"),
        ("sharing:\n  groups:\n    g:\n      withGroup: [x]\n", "withGroup"),
    ],
)
def test_a_bad_sharing_section_names_its_path(section, says):
    doc = (ROOT / "examples" / "policy.yaml").read_text().split("\nsharing:")[0] + "\n" + section
    with pytest.raises(PolicyError) as raised:
        parse_policy(doc.encode(), "p.yaml")
    assert says in str(raised.value)


@pytest.mark.parametrize(
    ("owner_groups", "region", "recipient", "expires_in", "code"),
    [
        # a server that is not running has no region to share: refused before anything else
        (EU, None, Recipient("user", "carla", EU), None, "not_running"),
        (US, None, None, 60, "not_running"),
        # a share code (no recipient yet): only the owner's right and the lifetime count
        (EU, "eu", None, 480 * 60, None),
        (EU, "eu", None, 480 * 60 + 1, "too_long"),
        (EU, "eu", None, 480 * 60 + 0.5, "too_long"),
        # not being allowed to share at all comes before the lifetime
        (US, "us", None, 10**9, "not_permitted"),
        # a recipient's refusal comes before the lifetime
        (EU, "eu", Recipient("user", "bob", US), 10**9, "region_not_entitled"),
    ],
)
def test_not_running_and_too_long_are_rules_of_the_decision(
    owner_groups, region, recipient, expires_in, code
):
    refused = share_refusal(
        POLICY,
        owner_groups=owner_groups,
        region=region,
        recipient=recipient,
        expires_in=expires_in,
    )
    assert (refused.code if refused else None) == code
    if code == "too_long":
        assert "28800 seconds" in refused.message
    if code == "not_running":
        assert "start it first" in refused.message


def test_sharing_rights_say_whom_a_user_may_share_with_in_each_of_their_regions():
    from sovereign_hub.policy.sharing import sharing_rights

    ana = sharing_rights(POLICY, "ana", EU)
    assert ana.via_groups == EU
    assert ana.max_minutes == 480
    # the rule names us-analysts too, but they are not entitled to the EU
    assert ana.recipients == {"eu": ("eu-researchers",)}
    assert (ana.receive_from, ana.receive_regions) == (EU, ("eu",))

    bob = sharing_rights(POLICY, "bob", US)
    assert (bob.via_groups, bob.recipients) == ((), {})
    assert (bob.receive_from, bob.receive_regions) == (EU, ("us",))

    doc = (ROOT / "examples" / "policy.yaml").read_text()
    doc = doc.replace("withGroups: [eu-researchers, us-analysts]", "withUsers: [carla]")
    named_only = parse_policy(doc.encode(), "p.yaml").policy
    assert sharing_rights(named_only, "ana", EU).users == ("carla",)
    assert sharing_rights(named_only, "carla", ()).receive_from == EU  # named, in no group
    assert sharing_rights(named_only, "dan", US).receive_from == ()
