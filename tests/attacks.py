"""Hypothesis strategies for hostile spawn requests, shared by the pure and the HTTP fuzz tests.

A request body is any JSON value. The ones worth most are *near misses*: the
keys the spawner accepts and the profile, region and version names of the
policy, bent by the tricks that fool people and naive comparisons — case,
whitespace, zero-width and bidirectional controls, NUL, lone surrogates,
look-alike letters from other scripts, fullwidth forms and lists of names.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st

from sovereign_hub.spawner.options import ALLOWED, KUBESPAWNER_OVERRIDES

ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
BIDI = ["\u202e", "\u202d", "\u200f", "\u200e", "\u2066", "\u2069"]
CONTROL = ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\u2028"]
SURROGATES = ["\ud800", "\udfff"]
# Latin letters and look-alikes from Cyrillic, Greek and fullwidth forms.
CONFUSABLES = {
    "a": ["\u0430", "\u03b1", "\uff41"],
    "e": ["\u0435", "\u03b5", "\uff45"],
    "o": ["\u043e", "\u03bf", "\uff4f", "0"],
    "p": ["\u0440", "\u03c1"],
    "c": ["\u0441", "\u03f2"],
    "u": ["\u03c5", "\u057d"],
    "s": ["\u0455"],
    "i": ["\u0456", "\u0131", "1", "l"],
    "g": ["\u0261"],
    "1": ["l", "\u0661", "\uff11"],
    "0": ["o", "\u0660", "\uff10"],
    "-": ["\u2010", "\u2011", "\u2212", "_"],
}


def _confusable(name: str, data: st.DataObject) -> str:
    positions = [i for i, ch in enumerate(name) if ch in CONFUSABLES]
    if not positions:
        return name.upper()
    i = data.draw(st.sampled_from(positions))
    return name[:i] + data.draw(st.sampled_from(CONFUSABLES[name[i]])) + name[i + 1 :]


def _insert(name: str, chars: list[str], data: st.DataObject) -> str:
    i = data.draw(st.integers(0, len(name)))
    return name[:i] + data.draw(st.sampled_from(chars)) + name[i:]


@st.composite
def near_miss(draw: st.DrawFn, names: Iterable[str]) -> str:
    """One of ``names``, exactly or bent by one trick."""
    name = draw(st.sampled_from(sorted(names)))
    data = draw(st.data())
    trick = draw(
        st.sampled_from(
            [
                "exact",
                "exact",
                "case",
                "space",
                "zero-width",
                "bidi",
                "control",
                "surrogate",
                "confusable",
                "fullwidth",
                "decomposed",
                "list-like",
                "path",
                "long",
            ]
        )
    )
    if trick == "exact":
        return name
    if trick == "case":
        return draw(st.sampled_from([name.upper(), name.title(), name.swapcase()]))
    if trick == "space":
        return draw(st.sampled_from([f" {name}", f"{name} ", f"{name}\u00a0", f"\t{name}\n"]))
    if trick == "zero-width":
        return _insert(name, ZERO_WIDTH, data)
    if trick == "bidi":
        return _insert(name, BIDI, data)
    if trick == "control":
        return _insert(name, CONTROL, data)
    if trick == "surrogate":
        return _insert(name, SURROGATES, data)
    if trick == "confusable":
        return _confusable(name, data)
    if trick == "fullwidth":
        return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in name)
    if trick == "decomposed":
        return unicodedata.normalize("NFKD", name.upper()) + "\u0301"
    if trick == "list-like":
        other = draw(st.sampled_from(sorted(names)))
        return draw(st.sampled_from([f"{name},{other}", f"{name} {other}", f"[{name!r}]"]))
    if trick == "path":
        return draw(st.sampled_from([f"../{name}", f"{name}/..", f"{name}%00", f"{name}*"]))
    return name * draw(st.integers(20, 120))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def option_values(names: Iterable[str]) -> st.SearchStrategy[Any]:
    """What a value of an allowed key may be: a near miss of a real name, or any JSON."""
    names = list(names)
    return st.one_of(
        near_miss(names),
        near_miss(names),
        near_miss(names),
        st.just(""),
        json_values,
        st.lists(near_miss(names), min_size=1, max_size=3),
        st.dictionaries(st.sampled_from(["name", "slug", "value"]), near_miss(names), max_size=2),
    )


def spawn_bodies(
    profiles: Iterable[str], regions: Iterable[str], versions: Iterable[str]
) -> st.SearchStrategy[Any]:
    """Any JSON body for ``POST /users/{name}/server``, mostly objects near a valid request."""
    keys = st.one_of(
        st.sampled_from(sorted(KUBESPAWNER_OVERRIDES)),
        near_miss(ALLOWED),
        st.text(max_size=12),
    )
    near_request = st.fixed_dictionaries(
        {},
        optional={
            "profile": option_values(profiles),
            "region": option_values(regions),
            "version": option_values(versions),
        },
    )
    with_extras = st.builds(
        lambda base, extra: {**base, **extra},
        near_request,
        st.dictionaries(keys, json_values, max_size=3),
    )
    return st.one_of(near_request, near_request, with_extras, json_values)
