"""What one login or one refresh carries across OAuthenticator's calls.

OAuthenticator calls ``authenticate`` → ``token_to_user`` → ``build_auth_state_dict`` (and
``refresh_user`` → ``token_to_user``) with no room for our own arguments, and one hub serves
many logins at once: context variables keep each request's values to that request's task.
"""

from __future__ import annotations

import contextvars
from typing import Any

EXPECTED_NONCE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sovereign_nonce", default=None
)
# Within one login or refresh: the groups claim of the last ID token verified for this user,
# and (at a refresh) the subject the user logged in as.
ID_TOKEN_GROUPS: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "sovereign_id_token_groups", default=None
)
REFRESHING_SUB: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sovereign_refreshing_sub", default=None
)
