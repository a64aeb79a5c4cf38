"""Group shares that open servers: a version-guarded patch of JupyterHub's token scopes.

JupyterHub 5.0 to 6.1 resolves an API token's permissions in
``jupyterhub.scopes.get_scopes_for``: the token's owner gets their roles and
the shares made with them (``owner.shared_with_me``), but not the shares made
with their groups (``orm.User.all_shared_with_me`` holds both). A signed-in
person's own permissions do include group shares, so the hub's OAuth
authorize lets a group member through, and then the token it issues is
missing the very ``access:servers`` the share gave: the single-user server
answers 403. Every request to a server carries a token, so in these versions
a group share lets no member in.

:func:`install` wraps ``get_scopes_for`` so a user's token also gets what
their groups' shares give, limited, as for a user share, to what the token
itself may carry. It patches only the versions in :data:`AFFECTED`; the test
``test_upstream_token_scopes_still_miss_group_shares`` fails as soon as
JupyterHub's own function counts group shares, so the patch is dropped then.

Why a patch and not one user share per group member: JupyterHub's ``Share``
rows have no field to mark a share as derived from a group's, so derived
shares would be indistinguishable from direct ones in JupyterHub's own
listings and endpoints (``/hub/api/shares``, ``/hub/api/users/{u}/shared``), a
recipient "leaving" one would leave a share they never held, and a member who
joins would wait for the next reconcile. The patch keeps one row, JupyterHub's
own, for one grant; the policy, the audit trail and the reconcile see a group
share exactly as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import jupyterhub
from jupyterhub import orm, scopes

log = logging.getLogger(__name__)

AFFECTED = ((5, 0), (6, 1))
"""The (major, minor) range, inclusive, whose ``get_scopes_for`` leaves group shares
out of a token's permissions."""

_PATCHED = "__sovereign_group_shares__"


def affected(version: tuple[int, ...] = tuple(jupyterhub.version_info[:2])) -> bool:
    low, high = AFFECTED
    return low <= tuple(version[:2]) <= high


def group_share_scopes(token: orm.APIToken) -> set[str]:
    """What the shares made with a token's owner's groups give, within the token's own scopes."""
    owner = token.user
    if owner is None:
        return set()
    granted = {s for group in owner.groups for share in group.shared_with_me for s in share.scopes}
    if not granted:
        return set()
    asked = set(token.scopes)
    if "inherit" in asked:
        return granted
    # The token's own scopes, expanded as JupyterHub expands them for a user share.
    expanded = set(scopes.expand_scopes(asked, owner=owner, oauth_client=token.oauth_client))
    if token.client_id != "jupyterhub":
        expanded.update(scopes.access_scopes(token.oauth_client))
    return set(
        scopes._intersect_expanded_scopes(
            scopes.reduce_scopes(expanded), granted, db=orm.Session.object_session(token)
        )
    )


def _with_group_shares(upstream: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def get_scopes_for(orm_object: Any) -> Any:
        found = upstream(orm_object)
        if isinstance(orm_object, orm.APIToken) and orm_object.user is not None:
            extra = group_share_scopes(orm_object)
            if extra:
                return type(found)(found) | extra
        return found

    setattr(get_scopes_for, _PATCHED, upstream)
    get_scopes_for.__doc__ = upstream.__doc__
    return get_scopes_for


def install() -> bool:
    """Patch ``get_scopes_for`` where JupyterHub reads it; True if patched (or already)."""
    if getattr(scopes.get_scopes_for, _PATCHED, None) is not None:
        return True
    if not affected():
        log.info(
            "JupyterHub %s is outside %s-%s: its own token scopes are used for group shares",
            jupyterhub.__version__, *AFFECTED,
        )  # fmt: skip
        return False
    from jupyterhub.apihandlers import base as apihandlers_base

    patched = _with_group_shares(scopes.get_scopes_for)
    # handlers/base.py reads scopes.get_scopes_for at each request (token auth);
    # apihandlers/base.py imported the name (a token's model lists its scopes).
    scopes.get_scopes_for = patched
    apihandlers_base.get_scopes_for = patched
    log.info("group shares: token scopes include the owner's groups' shares (JupyterHub fix)")
    return True
