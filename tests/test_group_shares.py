"""The group-share patch of JupyterHub's token scopes, on JupyterHub's real ORM (in-memory SQLite).

``test_upstream_token_scopes_still_miss_group_shares`` pins the defect in the
installed JupyterHub: when it fails, JupyterHub counts group shares itself and
:mod:`sovereign_hub.group_shares` should be removed. The hub-level test is
``test_a_group_share_lets_its_members_in`` in ``test_sharing_hub.py``.
"""

from __future__ import annotations

import pytest
from jupyterhub import orm, roles, scopes

from sovereign_hub import group_shares

SHARED = "access:servers!server=ana/"


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite:///:memory:")()
    for role in roles.get_default_roles():
        roles.create_role(session, role)
    ana, carla, bob = (orm.User(name=n) for n in ("ana", "carla", "bob"))
    group = orm.Group(name="eu-researchers", users=[ana, carla])
    # The hub's own OAuth client, which every API token belongs to.
    session.add_all([orm.OAuthClient(identifier="jupyterhub"), ana, carla, bob, group])
    session.commit()
    for user in (ana, carla, bob):
        roles.assign_default_roles(session, user)
    spawner = orm.Spawner(user=ana, name="")
    session.add(spawner)
    session.commit()
    orm.Share.grant(session, spawner, group)
    session.commit()
    yield session
    session.close()


def token(db, name: str, token_scopes=("inherit",)) -> orm.APIToken:
    user = orm.User.find(db, name)
    new = user.new_api_token(scopes=list(token_scopes))
    db.commit()
    return orm.APIToken.find(db, new)


@pytest.mark.parametrize("token_scopes", [("inherit",), (SHARED,)])
def test_upstream_token_scopes_still_miss_group_shares(db, token_scopes):
    """JupyterHub's own get_scopes_for, unpatched: a member's session has the group share,
    their token does not (scopes.get_scopes_for, the APIToken branch reads
    owner.shared_with_me). When this fails, upstream fixed it: drop the patch."""
    upstream = getattr(scopes.get_scopes_for, group_shares._PATCHED, scopes.get_scopes_for)
    carla = orm.User.find(db, "carla")
    assert SHARED in upstream(carla)
    assert SHARED not in upstream(token(db, "carla", token_scopes))
    assert group_shares.affected(), "the patch is for the installed JupyterHub"


@pytest.mark.parametrize(
    ("user", "token_scopes", "opens"),
    [
        ("carla", ("inherit",), True),  # a member, with a full token (the API)
        ("carla", (SHARED,), True),  # a member, a token for ana's server (as OAuth issues)
        ("carla", ("read:users:name!user=carla",), False),  # a member's token that may not
        ("bob", ("inherit",), False),  # not a member
    ],
)
def test_the_patched_token_scopes_include_the_groups_shares(db, user, token_scopes, opens):
    patched = group_shares._with_group_shares(
        getattr(scopes.get_scopes_for, group_shares._PATCHED, scopes.get_scopes_for)
    )
    assert (SHARED in patched(token(db, user, token_scopes))) is opens


def test_a_member_who_leaves_the_group_loses_the_share_at_once(db):
    carla = orm.User.find(db, "carla")
    held = token(db, "carla")
    patched = group_shares._with_group_shares(
        getattr(scopes.get_scopes_for, group_shares._PATCHED, scopes.get_scopes_for)
    )
    assert SHARED in patched(held)
    carla.groups = []
    db.commit()
    assert SHARED not in patched(held)


@pytest.mark.parametrize(
    ("version", "patched"),
    [((4, 1), False), ((5, 0), True), ((6, 1), True), ((6, 2), False), ((7, 0), False)],
)
def test_only_the_affected_versions_are_patched(version, patched):
    assert group_shares.affected(version) is patched
