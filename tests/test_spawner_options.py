"""user_options from the REST API and the spawn form: only what may be chosen, checked strictly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sovereign_hub.spawner.options import (
    Choice,
    OptionsError,
    checked_user_options,
    options_from_form_data,
    parse_user_options,
)
from tests.conftest import examples


@pytest.mark.parametrize(
    ("options", "choice"),
    [
        (None, Choice()),
        ({}, Choice()),
        ({"profile": "gpu-a100"}, Choice("gpu-a100")),
        (
            {"profile": "cpu-small", "region": "eu", "version": "2026.11"},
            Choice("cpu-small", "eu", "2026.11"),
        ),
        ({"profile": "cpu-small", "region": ""}, Choice("cpu-small")),
    ],
)
def test_accepted(options, choice):
    assert parse_user_options(options) == choice


@pytest.mark.parametrize(
    ("options", "status", "text"),
    [
        ({"image": "evil/image:latest"}, 403, "setting 'image' directly is not allowed"),
        ({"profile": "cpu-small", "node_selector": {"gpu": "yes"}}, 403, "'node_selector'"),
        (
            {"extra_resource_limits": {"nvidia.com/gpu": 8}},
            403,
            "the image, resources and placement",
        ),
        ({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}, 403, "'volumes'"),
        ({"kubespawner_override": {"image": "x"}}, 403, "'kubespawner_override'"),
        (
            {"profile": "x", "colour": "blue"},
            400,
            "unknown option 'colour'; allowed: profile, region, version",
        ),
        ({"profile": 3}, 400, "option 'profile' must be text, got int"),
        ({"profile": ["a", "b"]}, 400, "must be text, got list"),
        ({"profile": "x" * 101}, 400, "longer than 100 characters"),
        ({"profile": "p", "region": "r" * 5000}, 400, "too large"),
        ({f"k{i}": "v" for i in range(17)}, 400, "too large"),
        (["profile"], 400, "must be an object"),
    ],
)
def test_refused(options, status, text):
    with pytest.raises(OptionsError) as info:
        parse_user_options(options)
    assert info.value.status == status
    assert text in info.value.message


def test_form_fields_become_options():
    form = {
        "profile": ["gpu-a100"],
        "region-gpu-a100": ["eu"],
        "version-gpu-a100": ["2026.11"],
        "region-cpu-small": ["us"],
        "version-cpu-small": ["2026.09"],
    }
    assert options_from_form_data(form) == {
        "profile": "gpu-a100",
        "region": "eu",
        "version": "2026.11",
    }
    assert options_from_form_data({}) == {}


_keys = st.sampled_from(["profile", "region", "version", "image", "colour", "", "Profile"])
_values = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.text(alphabet="ab", min_size=98, max_size=103),  # either side of MAX_VALUE_LENGTH
    st.integers(),
    st.lists(st.text(max_size=3), max_size=2),
)


@settings(max_examples=examples(500), deadline=None)
@given(st.dictionaries(_keys, _values, max_size=8))
def test_the_shortcut_for_well_formed_options_agrees_with_the_full_check(options):
    """parse_user_options skips the full check for short strings of allowed keys; whatever
    it is given, its answer (a choice, or a refusal with its status and message) is the
    full check's."""

    def outcome(parse):
        try:
            return parse(options)
        except OptionsError as exc:
            return (exc.status, exc.message)

    assert outcome(parse_user_options) == outcome(checked_user_options)
