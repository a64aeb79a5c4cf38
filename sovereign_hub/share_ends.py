"""A share's own end, when its owner chose one shorter than the policy's maximum.

JupyterHub's ``Share`` has no end time, so the end a person chooses is kept in
a table of ours in the hub's database, ``sovereign_share_ends``, next to
JupyterHub's ``shares``: the share's id and creation time (a row whose share
was deleted, or whose id was reused by a later share, matches nothing) and
its end. A share without a row ends at the policy's maximum; one with a row
ends at the earlier of the two, so a policy that shortens ``maxMinutes``
still applies. The table is created when first needed; JupyterHub's own
migrations never touch it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jupyterhub import orm
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, delete, insert, select

metadata = MetaData()
share_ends = Table(
    "sovereign_share_ends",
    metadata,
    Column("share_id", Integer, primary_key=True),
    Column("created_at", DateTime, nullable=False),
    Column("ends_at", DateTime, nullable=False),
)
_created: set[int] = set()


def _ensure(db: Any) -> None:
    engine = db.get_bind()
    if id(engine) not in _created:
        metadata.create_all(engine, checkfirst=True)
        _created.add(id(engine))


def _naive(moment: datetime) -> datetime:
    # As JupyterHub stores its datetimes: naive UTC.
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment


def chosen_end(db: Any, share: orm.Share) -> datetime | None:
    """The end chosen for ``share`` (naive UTC), or None (the policy's maximum applies)."""
    _ensure(db)
    row = db.execute(
        select(share_ends.c.ends_at).where(
            share_ends.c.share_id == share.id,
            share_ends.c.created_at == _naive(share.created_at),
        )
    ).first()
    return row[0] if row else None


def choose_end(db: Any, share: orm.Share, ends_at: datetime) -> None:
    """Keep ``ends_at`` as ``share``'s end (never later than one already chosen); commits."""
    earlier = chosen_end(db, share)
    ends = min(_naive(ends_at), earlier) if earlier else _naive(ends_at)
    db.execute(delete(share_ends).where(share_ends.c.share_id == share.id))
    db.execute(
        insert(share_ends).values(
            share_id=share.id, created_at=_naive(share.created_at), ends_at=ends
        )
    )
    db.commit()
