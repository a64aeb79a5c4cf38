"""What the identity provider says about a user, read defensively.

Pure functions: every odd shape a provider can send (a missing groups claim,
a string instead of a list, non-strings, thousands of groups) has one
defined outcome, never an exception that would become a 500.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sovereign_hub.identity import attributes

USERNAME = re.compile(r"^[^\s/\\?#%\x00-\x1f]{1,128}$")


def claim(data: Mapping[str, Any], path: str) -> Any:
    """``claim(d, "org.department")`` → ``d["org"]["department"]``, or None."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


@dataclass(frozen=True, slots=True)
class Groups:
    names: frozenset[str]
    notes: tuple[str, ...] = field(default=())
    """Why the raw claim was not taken as is (for the log)."""


def groups_from(value: Any, *, keep: Iterable[str] | None = None, limit: int = 1000) -> Groups:
    """Normalise a groups claim.

    Missing or null: no groups. A string: one group (some providers send a
    single group that way). A list: its non-empty printable strings, others ignored
    (a name with a control, zero-width or bidirectional character is never stripped
    into a name the policy knows).
    More than ``limit``: only those in ``keep`` (the groups the hub uses).
    """
    notes: list[str] = []
    if value is None:
        return Groups(frozenset(), ("the groups claim is missing",))
    if isinstance(value, str):
        values: list[Any] = [value]
        notes.append("the groups claim is a single string")
    elif isinstance(value, list | tuple):
        values = list(value)
    else:
        return Groups(frozenset(), (f"the groups claim is a {type(value).__name__}, not a list",))
    texts = [v.strip(" ") for v in values if isinstance(v, str) and len(v) <= 256]
    # A control, zero-width or bidirectional character makes a name that only looks like a
    # group the policy names (Python's strip() would even turn "eu-researchers\x1f" into
    # "eu-researchers"): such names are ignored, and said so, never repaired.
    hostile = sorted({t for t in texts if not t.isprintable()})
    names = {t for t in texts if t and t.isprintable()}
    if hostile:
        notes.append(
            f"{len(hostile)} group name(s) with control or invisible characters were ignored: "
            + ", ".join(ascii(t) for t in hostile[:5])
        )
    if len(names) + len(hostile) != len(values):
        notes.append(
            f"{len(values) - len(names) - len(hostile)} group value(s) were not usable text "
            "and were ignored"
        )
    if len(names) > limit:
        wanted = set(keep or ())
        notes.append(
            f"{len(names)} groups exceed the limit of {limit}: only those the hub uses are kept"
        )
        names &= wanted
    return Groups(frozenset(names), tuple(notes))


def attributes_from(data: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, list[str]]:
    """Policy attributes (e.g. ``country``) from the claims named in ``mapping``.

    Values are normalised as the spawner reads them back (:mod:`sovereign_hub.identity`).
    """
    found = attributes({name: claim(data, path) for name, path in mapping.items()})
    return {name: list(values) for name, values in found.items()}


def username_from(data: Mapping[str, Any], path: str) -> str | None:
    """The username claim, if it is text a hub URL and a Kubernetes label slug can carry."""
    value = claim(data, path)
    if not isinstance(value, str) or not USERNAME.match(value.strip()):
        return None
    return value.strip().lower()


def with_claim(data: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with the (dotted) claim ``path`` set to ``value``."""
    head, _, rest = path.partition(".")
    out = dict(data)
    if not rest:
        out[head] = value
    else:
        inner = data.get(head)
        out[head] = with_claim(inner if isinstance(inner, Mapping) else {}, rest, value)
    return out


def group_overage(data: Mapping[str, Any], path: str) -> bool:
    """Whether the provider sent a link to the groups instead of the groups claim.

    Microsoft Entra ID does this for users in more than 200 groups (150 in SAML):
    the token then names the claim in ``_claim_names`` and the Graph API address
    to fetch it from in ``_claim_sources`` (OpenID Connect's distributed claims).
    """
    names = data.get("_claim_names")
    return isinstance(names, Mapping) and path.split(".")[0] in names
