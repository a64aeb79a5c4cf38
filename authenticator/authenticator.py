"""SovereignAuthenticator: company SSO over OpenID Connect, on OAuthenticator's protocol.

Thin on purpose: OAuthenticator runs the authorization-code flow (with PKCE),
token exchange, group management and refresh. This subclass adds only what
an enterprise deployment needs:

- endpoints from the issuer's discovery document;
- ID token verification (signature against the JWKS, issuer, audience,
  expiry, nonce), which upstream skips;
- username, groups and policy attributes from configurable, nested claims,
  normalised defensively (:mod:`.claims`);
- login refused, with a page saying whom to contact, for users in none of the
  policy's groups who hold no hub role;
- login, refusal and logout reported through the same interface as the spawner.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from oauthenticator.generic import GenericOAuthenticator
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Dict, Float, Instance, Integer, Set, Unicode, default, validate

from sovereign_hub import logscrub
from sovereign_hub.identity import AUTH_STATE_KEY, auth_state_entry
from sovereign_hub.pages.refusal import Contact, Refusal, parse_contact
from sovereign_hub.policy import PolicyError, cached_policy
from sovereign_hub.reporting import LogReporter, Reporter, SessionEvent

from .claims import attributes_from, claim, group_overage, groups_from, username_from
from .errors import LOGIN_REFUSED_HEADING, LoginRefused, ProviderUnavailable
from .handlers import SovereignCallbackHandler, SovereignLoginHandler, SovereignLogoutHandler
from .loginstate import EXPECTED_NONCE, ID_TOKEN_GROUPS, REFRESHING_SUB
from .refresh import GroupRefresh
from .tokens import IdTokenVerifier, TokenRejected


class SovereignAuthenticator(GroupRefresh, GenericOAuthenticator):
    """Log users in through the company's OpenID Connect provider.

    Minimal configuration::

        c.JupyterHub.authenticator_class = "sovereign"
        c.SovereignAuthenticator.issuer = "https://login.example.com/realms/corp"
        c.SovereignAuthenticator.client_id = "jupyterhub"
        c.SovereignAuthenticator.client_secret = "..."   # or $OAUTH_CLIENT_SECRET
        c.SovereignAuthenticator.oauth_callback_url = "https://hub.example.com/hub/oauth_callback"
        c.SovereignAuthenticator.policy_file = "/etc/sovereign-hub/policy.yaml"
    """

    login_handler = SovereignLoginHandler
    callback_handler = SovereignCallbackHandler
    logout_handler = SovereignLogoutHandler

    issuer = Unicode(
        config=True,
        help="""The provider's issuer URL. Endpoints and keys are read from
        `<issuer>/.well-known/openid-configuration`, and ID tokens must carry exactly this
        `iss`. Required.""",
    )
    groups_claim = Unicode(
        "groups",
        config=True,
        help="""Claim holding the user's groups; a dotted path reads nested claims
        (`realm_access.roles`). Missing: no groups. A string: one group.""",
    )
    attribute_claims = Dict(
        config=True,
        help="""Policy attributes and the claims they come from, e.g.
        `{"country": "country", "department": "org.department"}`. The policy's regions can
        require them (`requireAttributes`).""",
    )
    max_groups = Integer(
        1000,
        config=True,
        help="""More groups than this in a token keep only the groups the hub uses (policy,
        admin and auditor groups).""",
    )
    auditor_groups = Set(
        config=True,
        help="""Groups whose members may log in to read the audit trail even with no notebook
        entitlement.""",
    )
    policy_file = Unicode(
        "",
        config=True,
        help="""The policy document: users in none of its groups, and neither admin nor auditor,
        are refused at login. Empty: no such check (the spawner still refuses them).""",
    )
    reporter = Instance(
        Reporter,
        config=True,
        help="Receives login, login-refused and logout events (the spawner's reporter interface).",
    )
    provider_timeout = Float(
        10.0,
        config=True,
        help="""Seconds to wait for the provider's discovery document and its published keys
        (JWKS). A provider that is down or slower than this gives users a 503 page saying it
        is unreachable, or a refused login (`provider_unreachable`) when only its keys are.""",
    )
    provider_max_connections = Integer(
        64,
        config=True,
        help="""How many requests to the provider (token, userinfo, refresh) may be open at
        once; more wait in a queue. Tornado's default of 10 queued a burst of spawns, each
        refreshing its user, past the request timeout: at 500 spawns at once half failed.""",
    )

    @default("http_client")
    def _default_http_client(self) -> AsyncHTTPClient:
        # Our own client, not tornado's shared one, so the limit is ours alone.
        return AsyncHTTPClient(force_instance=True, max_clients=self.provider_max_connections)

    support_contact = Unicode(
        "",
        config=True,
        help="""Whom a refused person should ask for access: an http(s) URL (a help-desk form)
        or an e-mail address (`platform-team@example.com`, or with `mailto:`). Shown as a
        link on the page of a refused login and of a spawn the policy refused (the spawner
        reads it from here). Empty (default): no contact line; the reason is still shown.""",
    )

    @validate("support_contact")
    def _valid_contact(self, proposal: Any) -> str:
        parse_contact(proposal["value"], source="SovereignAuthenticator.support_contact")
        return str(proposal["value"])

    def contact(self) -> Contact | None:
        """The parsed :attr:`support_contact` (checked when set)."""
        return parse_contact(self.support_contact)

    @default("reporter")
    def _default_reporter(self) -> Reporter:
        return LogReporter(self.log)

    @default("username_claim")
    def _default_username_claim(self) -> str:
        return "preferred_username"

    @default("enable_pkce")
    def _default_pkce(self) -> bool:
        return True

    @default("manage_groups")
    def _default_manage_groups(self) -> bool:
        return True

    @default("enable_auth_state")
    def _default_auth_state(self) -> bool:
        return True

    @default("scope")
    def _default_scope(self) -> list[str]:
        return ["openid", "profile", "email"]

    @default("custom_403_message")
    def _default_403(self) -> str:
        return (
            "You are signed in, but none of your groups gives access to this hub. "
            "Ask your platform team to add you to a group that grants notebook profiles."
        )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        logscrub.install()
        self._nonce_key = secrets.token_bytes(32)
        self._verifier: IdTokenVerifier | None = None

    # -- discovery -------------------------------------------------------------
    async def discover(self) -> None:
        if self._verifier is not None:
            return
        if not self.issuer:
            raise ProviderUnavailable("SovereignAuthenticator.issuer is not configured")
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            config = await self.httpfetch(
                url,
                label="discovery",
                connect_timeout=self.provider_timeout,
                request_timeout=self.provider_timeout,
            )
        except (HTTPClientError, OSError) as exc:
            raise ProviderUnavailable(
                f"The identity provider ({self.issuer}) is unreachable, so you cannot log in "
                "right now. Try again in a minute."
            ) from exc
        if config.get("issuer") != self.issuer:
            raise ProviderUnavailable(
                "The identity provider's discovery document names issuer "
                f"{config.get('issuer')!r}, "
                f"not the configured {self.issuer!r}: refusing to trust it."
            )
        self.authorize_url = config["authorization_endpoint"]
        self.token_url = config["token_endpoint"]
        if config.get("userinfo_endpoint"):
            self.userdata_url = config["userinfo_endpoint"]
        self._verifier = IdTokenVerifier(
            config["jwks_uri"], self.issuer, self.client_id, timeout=self.provider_timeout
        )

    def nonce_for(self, state: str) -> str:
        return hmac.new(self._nonce_key, state.encode(), hashlib.sha256).hexdigest()

    # -- login -------------------------------------------------------------------
    def report(self, event: SessionEvent) -> None:
        try:
            self.reporter.report(event)
        except Exception:
            self.log.exception("reporting %s failed", event.kind)

    def _refuse(
        self, user: str, code: str, message: str, groups: tuple[str, ...] = ()
    ) -> LoginRefused:
        self.report(
            SessionEvent(kind="login_denied", user=user or "unknown", reasons=((code, message),))
        )
        reason = f"{message[:1].upper()}{message[1:]}."
        refusal = Refusal(LOGIN_REFUSED_HEADING, reason, user or "unknown", groups, self.contact())
        return LoginRefused(f"Login refused: {message}.", refusal)

    async def authenticate(self, handler: Any, data: Any = None, **kwargs: Any) -> Any:
        await self.discover()
        token = EXPECTED_NONCE.set(self.nonce_for(handler.get_argument("state", "")))
        groups_token = ID_TOKEN_GROUPS.set(None)
        try:
            return await super().authenticate(handler, data, **kwargs)
        except TokenRejected as exc:
            raise self._refuse("unknown", exc.code, exc.reason) from None
        except HTTPClientError as exc:
            if exc.code in (599,) or exc.code >= 500:
                raise ProviderUnavailable(
                    "The identity provider did not answer the login in time; try again in a minute."
                ) from None
            raise self._refuse(
                "unknown", "token_exchange", f"the provider refused the login code ({exc.code})"
            ) from None
        finally:
            EXPECTED_NONCE.reset(token)
            ID_TOKEN_GROUPS.reset(groups_token)

    async def token_to_user(self, token_info: dict[str, Any]) -> dict[str, Any]:
        nonce = EXPECTED_NONCE.get()
        if nonce is None:
            await self.discover()
            return await self._refreshed_claims(token_info)
        id_token = token_info.get("id_token")
        if not id_token:
            raise TokenRejected("no_id_token", "the provider returned no ID token")
        return await self._verified_claims(id_token, nonce, token_info)

    async def _verified_claims(
        self, id_token: str, nonce: str | None, token_info: dict[str, Any]
    ) -> dict[str, Any]:
        """The ID token's claims once verified, with userinfo's on top when there is one."""
        assert self._verifier is not None  # noqa: S101 - discover() ran
        claims = await self._verifier.verify(id_token, nonce)
        refreshing_sub = REFRESHING_SUB.get()
        if nonce is None and claims.get("sub") != refreshing_sub:
            raise TokenRejected("sub_mismatch", "the refreshed ID token names another user")
        ID_TOKEN_GROUPS.set(claim(claims, self.groups_claim))
        if self.userdata_url:
            info = await super().token_to_user(token_info)
            if info.get("sub") != claims.get("sub"):
                raise TokenRejected(
                    "sub_mismatch", "userinfo and the ID token name different users"
                )
            claims = {**claims, **info}
        return claims

    def user_info_to_username(self, user_info: dict[str, Any]) -> str:
        name = username_from(
            user_info, self.username_claim if isinstance(self.username_claim, str) else "sub"
        )
        if name is None:
            raise self._refuse(
                str(user_info.get("sub", "unknown")),
                "bad_username",
                f"the {self.username_claim!r} claim is missing or is not a usable username "
                "(1-128 characters, no spaces or slashes)",
            )
        return name

    async def get_user_groups(self, auth_state: dict[str, Any]) -> set[str]:
        raw = claim(auth_state.get(self.user_auth_state_key) or {}, self.groups_claim)
        groups = groups_from(raw, keep=self._relevant_groups(), limit=self.max_groups)
        for note in groups.notes:
            self.log.warning("groups of a login: %s", note)
        return set(groups.names)

    def build_auth_state_dict(
        self, token_info: dict[str, Any], user_info: dict[str, Any]
    ) -> dict[str, Any]:
        state: dict[str, Any] = super().build_auth_state_dict(token_info, user_info)
        # The last verified ID token's groups are kept only where a refresh may need them.
        kept = None if self.refresh_groups_from == "userinfo" else ID_TOKEN_GROUPS.get()
        state[AUTH_STATE_KEY] = auth_state_entry(
            attributes_from(user_info, self.attribute_claims), id_token_groups=kept
        )
        return state

    def _policy_groups(self) -> set[str] | None:
        """The groups the policy names; None when no policy is configured or it is unusable."""
        if not self.policy_file:
            return None
        try:
            loaded = cached_policy(self.policy_file)
        except PolicyError as exc:
            self.log.error("policy %s cannot be used:\n%s", self.policy_file, exc)
            return None
        self.reporter.policy_seen(str(self.policy_file), loaded.sha256)
        return set(loaded.policy.groups)

    def _relevant_groups(self) -> set[str]:
        return (self._policy_groups() or set()) | set(self.admin_groups) | set(self.auditor_groups)

    async def check_allowed(self, username: str, auth_model: dict[str, Any]) -> bool:
        if await super().check_allowed(username, auth_model):
            return True
        groups = set(auth_model.get("groups") or [])
        if auth_model.get("admin") or groups & set(self.auditor_groups):
            return True
        user_info = (auth_model.get("auth_state") or {}).get(self.user_auth_state_key) or {}
        if not groups and group_overage(user_info, self.groups_claim):
            raise self._refuse(
                username,
                "group_overage",
                "the identity provider sent a link instead of your groups because you are in "
                "too many (Entra ID sends at most 200); ask your platform team to send only the "
                "groups assigned to this application, or app roles",
            )
        if not self.policy_file:
            return True
        policy_groups = self._policy_groups()
        if policy_groups is None:
            # Missing or invalid (the error is logged): no one is entitled until it is fixed.
            raise self._refuse(
                username,
                "policy_unavailable",
                "the hub's policy cannot be read right now, so no notebook entitlement can be "
                "checked; ask your platform team to run `sovhub policy check` on it",
                tuple(sorted(groups)),
            )
        if groups & policy_groups:
            return True
        self.report(
            SessionEvent(
                kind="login_denied",
                user=username,
                reasons=(("no_entitlement", "none of the user's groups is named in the policy"),),
            )
        )
        # Raised, not `return False`: JupyterHub's own 403 could not say whom it saw.
        refusal = Refusal(
            LOGIN_REFUSED_HEADING,
            self.custom_403_message,
            username,
            tuple(sorted(groups)),
            self.contact(),
        )
        raise LoginRefused(self.custom_403_message, refusal)

    async def run_post_auth_hook(self, handler: Any, auth_model: dict[str, Any]) -> dict[str, Any]:
        model: dict[str, Any] = await super().run_post_auth_hook(handler, auth_model)
        self.report(
            SessionEvent(
                kind="login",
                user=model["name"],
                groups=tuple(sorted(model.get("groups") or [])),
                admin=bool(model.get("admin")),
            )
        )
        return model
