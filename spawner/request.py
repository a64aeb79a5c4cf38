"""From a checked choice to the request the policy decides on, and what a refused user reads.

Pure: the spawner fetches the identity, the policy, its pins and the clock,
and these functions only combine them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sovereign_hub.pages.refusal import Contact, Refusal
from sovereign_hub.policy import Denied, Identity, Pin, Policy, SpawnRequest, entitlements
from sovereign_hub.refusals import SpawnRefused

from .options import Choice


def spawn_request(
    choice: Choice, identity: Identity, policy: Policy, pins: Mapping[str, Pin], now: datetime
) -> SpawnRequest | None:
    """The request for ``choice``; None when it names no profile and the user is granted none.

    With no profile chosen (a REST request with no options), the user's first
    granted profile, in the policy's order, is taken. A chosen profile is passed
    on as is: whether it is granted is the decision's to say, with its reasons.
    """
    profile = choice.profile
    if profile is None:
        granted = entitlements(identity, policy)
        if not granted:
            return None
        profile = granted.grants[0].profile
    return SpawnRequest(profile, now, region=choice.region, version=choice.version, pins=dict(pins))


def refusal_message(decision: Denied, identity: Identity, no_access_message: str) -> str:
    """What a denied user reads: the decision's message, and whom to ask if they have no groups."""
    if identity.groups:
        return decision.message
    return f"{decision.message} {no_access_message}"


SPAWN_REFUSED_HEADING = "Your server was not started"


def spawn_refused(message: str, identity: Identity, authenticator: Any = None) -> SpawnRefused:
    """The 403 for a spawn the policy refused, with the card the spawn page shows.

    The contact is the authenticator's ``support_contact`` when it has one
    (SovereignAuthenticator), so it is configured once for login and spawn.
    """
    refusal = Refusal(
        SPAWN_REFUSED_HEADING,
        message,
        identity.username,
        tuple(sorted(identity.groups)),
        contact_of(authenticator),
    )
    return SpawnRefused(403, message, refusal)


def contact_of(authenticator: Any) -> Contact | None:
    """The authenticator's support contact (SovereignAuthenticator's), else none."""
    contact = getattr(authenticator, "contact", None)
    return contact() if callable(contact) else None


def timeout_message(start_timeout: float, events: Sequence[Mapping[str, Any]]) -> str:
    """Why a server did not start in time: Kubernetes' last warning, and what to try.

    A failing readiness probe means the pod runs but the server never answered;
    any other warning (FailedScheduling, a pull error) says why the pod never ran.
    """
    warnings = [e for e in events if e.get("type") == "Warning"]
    last = warnings[-1] if warnings else {}
    message = last.get("message", "")
    advice = "Try a smaller profile or another region, or try again later."
    if last.get("reason") == "Unhealthy":
        why = f" Its pod runs, but the server never answered its readiness probe ({message})."
        advice = "Its log says why; a busy node may need a longer start_timeout."
    elif last.get("reason") in (None, "FailedScheduling") and message:
        why = f" The scheduler reports: {message}"
    elif message:
        why = f" Kubernetes reports: {message}"
    else:
        why = ""
    return f"Your server did not start within {start_timeout} seconds.{why} {advice}"
