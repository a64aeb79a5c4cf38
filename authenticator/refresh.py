"""Refreshing a logged-in user (`auth_refresh_age`): where the groups come from, and what
happens to running servers whose entitlement the new groups no longer give.

A mixin of :class:`~sovereign_hub.authenticator.SovereignAuthenticator`, whose
``_verified_claims`` it uses for a fresh ID token; its settings are the authenticator's
(``c.SovereignAuthenticator.refresh_groups_from``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from tornado.httpclient import HTTPClientError
from tornado.web import HTTPError
from traitlets import Bool, Enum
from traitlets.config import Configurable

from sovereign_hub.identity import id_token_groups, identity_from
from sovereign_hub.policy import PolicyError, cached_policy, entitlements

from .claims import claim, with_claim
from .loginstate import ID_TOKEN_GROUPS, REFRESHING_SUB
from .tokens import TokenRejected


def provider_down(exc: BaseException) -> bool:
    """Whether ``exc`` says the provider did not answer (a timeout, a refused or dropped
    connection, a 5xx), as opposed to answering no."""
    if isinstance(exc, HTTPClientError):
        return exc.code == 599 or exc.code >= 500
    if isinstance(exc, HTTPError):
        return exc.status_code >= 500
    return isinstance(exc, (OSError, TimeoutError))


class GroupRefresh(Configurable):
    if TYPE_CHECKING:
        # What it uses of the authenticator it is mixed into: OAuthenticator's and
        # SovereignAuthenticator's.
        log: logging.Logger
        groups_claim: str
        enable_auth_state: bool
        user_auth_state_key: str
        policy_file: str

        def build_refresh_token_request_params(self, refresh_token: str) -> dict[str, Any]: ...
        async def get_token_info(self, handler: Any, params: dict[str, Any]) -> Any: ...
        async def _verified_claims(
            self, id_token: str, nonce: str | None, token_info: dict[str, Any]
        ) -> dict[str, Any]: ...

    refresh_groups_from = Enum(
        ["userinfo", "id_token", "last_id_token"],
        "userinfo",
        config=True,
        help="""Where a refresh (`auth_refresh_age`) takes the user's groups from.

        `userinfo` (default): the provider's userinfo endpoint, with the other claims; right
        for providers that put groups there (Keycloak, Okta).
        `id_token`: a fresh ID token from the refresh-token grant, verified as at login
        (signature, issuer, audience, expiry, same subject); for Microsoft Entra ID, whose
        userinfo carries no groups. Needs a refresh token (Entra: add `offline_access` to
        `scope`). With no refresh token, or a grant answered without an ID token, the groups
        of the last verified ID token are kept and this is logged; a refused grant or token
        sends the user to log in again.
        `last_id_token`: claims from userinfo, but when they carry no groups claim the groups
        of the last verified ID token are kept, so group changes apply at the next login.""",
    )
    stop_unentitled_servers = Bool(
        False,
        config=True,
        help="""When a refresh (`auth_refresh_age`) shows that a user lost the entitlement to a
        running server's profile or region, stop that server (reported as `server-stopped`
        with reason `entitlement_lost`). Off: the loss applies from the next start.
        Requires `policy_file`.""",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Stops started for lost entitlements, kept until done so they are not collected.
        self._stopping: set[asyncio.Future[Any]] = set()

    async def _refreshed_claims(self, token_info: dict[str, Any]) -> dict[str, Any]:
        """A refresh's claims, with groups from where `refresh_groups_from` says."""
        if self.refresh_groups_from == "id_token":
            fresh = await self._refresh_grant(token_info)
            # OAuthenticator builds the new auth_state from this same dict: the refreshed
            # tokens replace the old (a provider may send no new refresh token: keep it).
            token_info.update(fresh)
            if fresh.get("id_token"):
                return await self._verified_claims(fresh["id_token"], None, token_info)
            if fresh:
                self.log.warning(
                    "the provider answered the refresh-token grant without an ID token: "
                    "keeping the groups of the last verified one"
                )
        # OAuthenticator's, after this mixin in the authenticator's MRO (untyped).
        info: dict[str, Any] = await super().token_to_user(token_info)  # type: ignore[misc]
        if self.refresh_groups_from != "userinfo" and claim(info, self.groups_claim) is None:
            kept = ID_TOKEN_GROUPS.get()
            if kept is not None:
                info = with_claim(info, self.groups_claim, kept)
        return info

    async def _refresh_grant(self, token_info: dict[str, Any]) -> dict[str, Any]:
        refresh_token = token_info.get("refresh_token")
        if not refresh_token:
            self.log.warning(
                "no refresh token to fetch a fresh ID token with (for Entra ID, add "
                "offline_access to SovereignAuthenticator.scope): keeping the groups of the "
                "last verified ID token"
            )
            return {}
        params = self.build_refresh_token_request_params(refresh_token)
        try:
            fresh: dict[str, Any] = await self.get_token_info(None, params)
        except (HTTPClientError, HTTPError) as exc:
            if provider_down(exc):
                raise
            raise TokenRejected(
                "refresh_refused", f"the provider refused the refresh-token grant ({exc})"
            ) from None
        return fresh

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        auth_state = await user.get_auth_state() if self.enable_auth_state else None
        previous = (auth_state or {}).get(self.user_auth_state_key) or {}
        sub_token = REFRESHING_SUB.set(previous.get("sub"))
        groups_token = ID_TOKEN_GROUPS.set(id_token_groups(auth_state))
        try:
            # OAuthenticator's, after this mixin in the authenticator's MRO (untyped).
            model = await super().refresh_user(user, handler, **kwargs)  # type: ignore[misc]
        except TokenRejected as exc:
            self.log.warning("refresh of %s refused (%s): log in again", user.name, exc.reason)
            return False
        except Exception as exc:
            if not provider_down(exc):
                raise
            # The provider did not answer: keep the current sign-in and groups until the next
            # refresh (auth_refresh_age). JupyterHub refreshes inside every request's
            # prepare(), which turns an exception into an anonymous request: raising here
            # would lock every user out of the hub and their running servers while the
            # provider is down, and logging them out would too.
            self.log.warning(
                "refresh of %s: the provider did not answer (%s); keeping the current sign-in "
                "and groups until the next refresh",
                user.name,
                type(exc).__name__,
            )
            return True
        finally:
            REFRESHING_SUB.reset(sub_token)
            ID_TOKEN_GROUPS.reset(groups_token)
        if self.stop_unentitled_servers and isinstance(model, dict) and handler is not None:
            for name in self._unentitled_servers(user, model):
                self.log.warning(
                    "stopping %s's server %r: its entitlement was lost", user.name, name
                )
                # In the background: the user's request must not wait for the stop.
                task = asyncio.ensure_future(handler.stop_single_user(user, name))
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)
        return model

    def _unentitled_servers(self, user: Any, model: dict[str, Any]) -> list[str]:
        """The user's running servers whose profile or region ``model`` no longer grants.

        Asks each Sovereign spawner (:meth:`SovereignSpawner.check_entitlement`), which
        also records why its coming stop happens; other spawners are left alone.
        """
        if not self.policy_file:
            return []
        try:
            policy = cached_policy(self.policy_file).policy
        except PolicyError:
            return []
        identity = identity_from(user.name, model.get("groups") or [], model.get("auth_state"))
        granted = entitlements(identity, policy)
        return [
            name
            for name, spawner in user.spawners.items()
            if spawner.active
            and callable(getattr(spawner, "check_entitlement", None))
            and not spawner.check_entitlement(granted)
        ]
