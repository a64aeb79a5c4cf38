"""The identity the policy sees, and how it travels from the authenticator to the spawner.

The authenticator writes a user's policy attributes into ``auth_state`` with
:func:`auth_state_entry`; the spawner (and the authenticator itself, at
refresh) reads them back with :func:`identity_from`. Both sides normalise
attribute values with the same :func:`attribute_values`, so what the
provider sent is judged the same way at login, at spawn and at refresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sovereign_hub.policy import Identity

AUTH_STATE_KEY = "sovereign"
"""``auth_state[AUTH_STATE_KEY]["attributes"]`` holds the user's policy attributes."""

MAX_ATTRIBUTE_VALUES = 50
"""Values kept per attribute; a provider sending more is trimmed, not refused."""


def attribute_values(value: Any) -> tuple[str, ...]:
    """One attribute's values as text: a single value or a list; text and whole numbers only.

    Booleans, objects and nulls are dropped (a ``true`` is no country code);
    at most :data:`MAX_ATTRIBUTE_VALUES` are kept.
    """
    values = value if isinstance(value, list | tuple) else [value]
    kept = (str(v) for v in values if isinstance(v, str | int) and not isinstance(v, bool))
    return tuple(kept)[:MAX_ATTRIBUTE_VALUES]


def attributes(raw: Any) -> dict[str, tuple[str, ...]]:
    """Every attribute of ``raw`` (a mapping of name to value(s)) with usable values."""
    if not isinstance(raw, Mapping):
        return {}
    out = {str(name): attribute_values(value) for name, value in raw.items()}
    return {name: values for name, values in out.items() if values}


def auth_state_entry(attrs: Mapping[str, Any], id_token_groups: Any = None) -> dict[str, Any]:
    """What the authenticator stores under :data:`AUTH_STATE_KEY` (JSON-safe).

    ``id_token_groups``: the groups claim of the last verified ID token, as sent, kept for a
    refresh that finds no groups elsewhere (``SovereignAuthenticator.refresh_groups_from``).
    """
    entry: dict[str, Any] = {
        "attributes": {name: list(values) for name, values in attributes(attrs).items()}
    }
    if id_token_groups is not None:
        entry["idTokenGroups"] = id_token_groups
    return entry


def id_token_groups(auth_state: Mapping[str, Any] | None) -> Any:
    """The groups claim :func:`auth_state_entry` kept from the last verified ID token, or None."""
    entry = (auth_state or {}).get(AUTH_STATE_KEY)
    return entry.get("idTokenGroups") if isinstance(entry, Mapping) else None


def identity_from(
    username: str, groups: Iterable[str], auth_state: Mapping[str, Any] | None
) -> Identity:
    """The policy's view of a user from the hub's: name, group names and ``auth_state``."""
    entry = (auth_state or {}).get(AUTH_STATE_KEY)
    raw = entry.get("attributes") if isinstance(entry, Mapping) else None
    return Identity(username=username, groups=frozenset(groups), attributes=attributes(raw))
