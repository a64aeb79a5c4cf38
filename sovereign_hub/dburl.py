"""Take the password out of a PostgreSQL URL, wherever libpq would read it from.

libpq takes a password from the URL's user part (``user:pw@host``) and from
its query (``?password=…``, and ``?sslpassword=…`` for an encrypted client
key). A URL on a command line is visible in the process list, so neither may
reach ``pg_dump``'s argv; and a URL written into a values file must not carry
one either. One parser for both uses, so the two never disagree on what
counts as a password.

:func:`urllib.parse.urlsplit` splits user from host at the *last* ``@``, so a
password holding ``@`` or ``:`` goes whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
"""Query parameters libpq reads a secret from (lower case; matched case-insensitively)."""

SCHEME = re.compile(r"postgres(ql)?(\+\w+)?")
"""``postgres``, ``postgresql`` and SQLAlchemy's ``postgresql+driver``."""


@dataclass(frozen=True, slots=True)
class SplitUrl:
    """A PostgreSQL URL as libpq takes it, without any password, and where one was.

    ``url`` has the scheme ``postgresql`` (no SQLAlchemy driver), the user
    without a password, the query without secret parameters and no fragment
    (which libpq does not take); ``user`` and
    ``host`` are "" when the URL names none. ``found`` names each place a
    password was, as ``user:password@`` or ``?password=``, never its value.
    """

    url: str
    user: str
    host: str
    found: tuple[str, ...]


def split_password(url: str) -> SplitUrl | None:
    """``url`` without its password(s); None when it is not a PostgreSQL URL."""
    parts = urlsplit(url)
    if not SCHEME.fullmatch(parts.scheme):
        return None
    userinfo, at, host = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    found = ["user:password@"] if colon else []
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if k.lower() not in SECRET_PARAMETERS]
    found += sorted({f"?{k.lower()}=" for k, _ in query if k.lower() in SECRET_PARAMETERS})
    netloc = f"{user}@{host}" if at else host
    # Only a query that lost a parameter is re-encoded, so any other URL keeps its spelling.
    rebuilt = urlencode(kept) if len(kept) != len(query) else parts.query
    # Built by hand: urlunsplit drops the "//" of an empty host (a socket in ?host=),
    # which libpq then refuses. No fragment: libpq takes none.
    clean = f"postgresql://{netloc}{parts.path}" + (f"?{rebuilt}" if rebuilt else "")
    return SplitUrl(clean, user, host, tuple(found))


__all__ = ["SECRET_PARAMETERS", "SplitUrl", "split_password"]
