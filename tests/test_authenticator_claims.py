"""Claims from a provider, in every shape a provider sends them."""

from __future__ import annotations

import pytest

from sovereign_hub.authenticator.claims import attributes_from, claim, groups_from, username_from


@pytest.mark.parametrize(
    ("value", "names", "note"),
    [
        (["a", "b"], {"a", "b"}, None),
        (None, set(), "missing"),
        ("solo", {"solo"}, "single string"),
        (["a", 3, None, {"x": 1}, " ", "b"], {"a", "b"}, "not usable text"),
        ({"a": 1}, set(), "is a dict"),
        (42, set(), "is a int"),
        (["x" * 300, "ok"], {"ok"}, "not usable text"),
        (["eu-researchers\x1f"], set(), "control or invisible characters"),
        (["\teu-researchers\n"], set(), "'\\teu-researchers\\n'"),
        (["eu-researchers\u200b", "ok"], {"ok"}, "'eu-researchers\\u200b'"),
        (["\u202eeu-researchers"], set(), "control or invisible"),
        (["eu\x00researchers", "\ud800"], set(), "2 group name(s)"),
        ([" eu-researchers "], {"eu-researchers"}, None),
    ],
)
def test_groups_claim_shapes(value, names, note):
    groups = groups_from(value)
    assert groups.names == names
    if note:
        assert any(note in n for n in groups.notes)


def test_huge_group_sets_keep_only_what_the_hub_uses():
    groups = groups_from(
        [f"g{i}" for i in range(5000)] + ["eu-researchers"],
        keep={"eu-researchers", "admins"},
        limit=1000,
    )
    assert groups.names == {"eu-researchers"}
    assert "5001 groups exceed the limit of 1000" in groups.notes[0]


def test_nested_claims_and_attributes():
    data = {"org": {"department": "R&D", "sites": ["DE", "FR"]}, "country": "DE", "flag": True}
    assert claim(data, "org.department") == "R&D"
    assert claim(data, "org.missing.deeper") is None
    assert attributes_from(
        data,
        {
            "department": "org.department",
            "sites": "org.sites",
            "country": "country",
            "flag": "flag",
            "none": "nope",
        },
    ) == {
        "department": ["R&D"],
        "sites": ["DE", "FR"],
        "country": ["DE"],
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Ana.Müller@corp.example", "ana.müller@corp.example"),
        (" bob ", "bob"),
        ("a/b", None),
        ("has space", None),
        ("", None),
        (None, None),
        (123, None),
        ("x" * 129, None),
        ("tab\there", None),
    ],
)
def test_usernames_a_hub_and_kubernetes_can_carry(value, expected):
    assert username_from({"preferred_username": value}, "preferred_username") == expected
