"""OAuthenticator's login, callback and logout handlers, each with what the audit trail and
the ID token's nonce need."""

from __future__ import annotations

from typing import Any

from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthLoginHandler, OAuthLogoutHandler
from tornado.web import HTTPError

from sovereign_hub.reporting import SessionEvent


class SovereignLoginHandler(OAuthLoginHandler):
    async def get(self) -> None:
        await self.authenticator.discover()
        super().get()

    def authorize_redirect(self, *args: Any, **kwargs: Any) -> None:
        params = kwargs.setdefault("extra_params", {})
        # The nonce is derived from this login's state, so the callback can
        # check the ID token answers this very request without storing anything.
        params["nonce"] = self.authenticator.nonce_for(params["state"])
        super().authorize_redirect(*args, **kwargs)


class SovereignCallbackHandler(OAuthCallbackHandler):
    """OAuthenticator's callback checks, each refusal also recorded as ``login_denied``.

    A callback with the provider's error, no code, or a state that is missing or
    is not this browser's (a replayed or forged callback) is refused by
    OAuthenticator with 400 before :meth:`SovereignAuthenticator.authenticate`
    runs; without this, the audit trail would not see those attempts.
    """

    def _checked(self, code: str, check: Any) -> None:
        try:
            check()
        except HTTPError as exc:
            # tornado keeps log_message as a format string (a bare % doubled): format it back.
            reason = "the login callback is invalid"
            if exc.log_message:
                reason = exc.log_message % exc.args
            self.authenticator.report(
                SessionEvent(kind="login_denied", user="unknown", reasons=((code, reason),))
            )
            raise

    def check_error(self) -> None:
        self._checked("provider_error", super().check_error)

    def check_code(self) -> None:
        self._checked("missing_code", super().check_code)

    def check_state(self) -> None:
        self._checked("state_mismatch", super().check_state)


class SovereignLogoutHandler(OAuthLogoutHandler):
    async def get(self) -> None:
        user = self.current_user
        if user is not None:
            self.authenticator.report(SessionEvent(kind="logout", user=user.name))
        await super().get()
