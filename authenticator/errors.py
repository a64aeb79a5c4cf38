"""The two ways a login is refused: the provider is unusable (503), or the hub says no (403)."""

from __future__ import annotations

from sovereign_hub.pages.refusal import Refusal
from sovereign_hub.refusals import Refused


class ProviderUnavailable(Refused):
    """The identity provider cannot be reached or trusted right now (503)."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)


class LoginRefused(Refused):
    """A login the hub will not accept, with why (403)."""

    def __init__(self, message: str, refusal: Refusal | None = None) -> None:
        super().__init__(403, message, refusal)


LOGIN_REFUSED_HEADING = "No access to this hub"
