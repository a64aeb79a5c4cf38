"""Which share let someone into a server (``share-accessed``), on JupyterHub's real ORM
(in-memory SQLite). The access-time checks in a real hub are in ``test_sharing_hub.py``."""

from __future__ import annotations

from jupyterhub import orm

from sovereign_hub.share_access import carries_access, share_used, shares_for
from tests.test_group_shares import db  # noqa: F401 - ana's server shared with eu-researchers


def test_a_share_without_access_is_not_credited_the_groups_is(db):  # noqa: F811
    ana, carla = orm.User.find(db, "ana"), orm.User.find(db, "carla")
    server = ana.orm_spawners[""]
    # carla's own share only lets her read the server's status: it did not let her in.
    orm.Share.grant(db, server, carla, scopes=["read:servers!server=ana/"])
    db.commit()
    direct, group = shares_for(server, carla)
    assert direct.user is carla
    assert group.group.name == "eu-researchers"
    assert not carries_access(direct)
    assert share_used(server, carla) is group


def test_a_direct_share_is_credited_before_a_groups(db):  # noqa: F811
    ana, carla = orm.User.find(db, "ana"), orm.User.find(db, "carla")
    server = ana.orm_spawners[""]
    orm.Share.grant(db, server, carla)
    db.commit()
    assert share_used(server, carla).user is carla
    assert share_used(server, orm.User.find(db, "bob")) is None
