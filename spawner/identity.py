"""The identity the policy sees, from what the hub knows of a user."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sovereign_hub.policy import Identity

AUTH_STATE_KEY = "sovereign"
"""auth_state[AUTH_STATE_KEY]["attributes"] holds the identity provider's policy attributes."""


def identity_from(
    username: str, groups: Iterable[str], auth_state: Mapping[str, Any] | None
) -> Identity:
    attributes: dict[str, tuple[str, ...]] = {}
    raw = ((auth_state or {}).get(AUTH_STATE_KEY) or {}).get("attributes") or {}
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            values = value if isinstance(value, list | tuple) else [value]
            attributes[str(key)] = tuple(str(v) for v in values if isinstance(v, str | int))
    return Identity(username=username, groups=frozenset(groups), attributes=attributes)
