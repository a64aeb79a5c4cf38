"""Where a PostgreSQL URL can hold a password, and that it comes out whole.

``sovhub hub-db`` refuses such a URL (pg_dump's argv is in the process list);
``sovhub migrate z2jh`` removes the password from the URL it writes. Both use
:func:`sovereign_hub.dburl.split_password`.
"""

from __future__ import annotations

import pytest

from sovereign_hub.dburl import split_password
from sovereign_hub.hubdb_pg import PgError, libpq_url


@pytest.mark.parametrize(
    ("url", "clean", "found"),
    [
        ("postgresql://hub@db:5432/jhub", "postgresql://hub@db:5432/jhub", ()),
        ("postgresql+psycopg2://hub:p@ss:w@rd@db/jhub", "postgresql://hub@db/jhub",
         ("user:password@",)),
        ("postgresql://hub:@db/jhub", "postgresql://hub@db/jhub", ("user:password@",)),
        ("postgres://hub@db/jhub?password=s3cret&sslmode=require",
         "postgresql://hub@db/jhub?sslmode=require", ("?password=",)),
        ("postgresql://hub@db/jhub?sslmode=verify-full&sslpassword=keypw",
         "postgresql://hub@db/jhub?sslmode=verify-full", ("?sslpassword=",)),
        ("postgresql://hub@db/jhub?PassWord=s3cret", "postgresql://hub@db/jhub", ("?password=",)),
        ("postgresql://hub:a@db/jhub?password=b&sslpassword=c", "postgresql://hub@db/jhub",
         ("user:password@", "?password=", "?sslpassword=")),
        # No password: the query keeps its own spelling (a socket directory, escaped).
        ("postgresql:///jhub?host=%2Fvar%2Frun%2Fpostgresql",
         "postgresql:///jhub?host=%2Fvar%2Frun%2Fpostgresql", ()),
        ("postgresql://hub@[2001:db8::1]:5432/jhub", "postgresql://hub@[2001:db8::1]:5432/jhub",
         ()),
    ],
)  # fmt: skip
def test_the_password_is_found_and_removed_wherever_libpq_would_read_it(url, clean, found):
    split = split_password(url)
    assert split is not None
    assert (split.url, split.found) == (clean, found)
    for secret in ("p@ss", "w@rd", "s3cret", "keypw", "password=", ":a@", "=b", "=c"):
        assert secret not in split.url


@pytest.mark.parametrize("url", ["mysql://hub:pw@db/jhub", "/srv/jupyterhub.sqlite", ""])
def test_what_is_not_a_postgresql_url_is_not_split(url):
    assert split_password(url) is None


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql://hub:s3cret@db/jhub", "user:password@"),
        ("postgresql://hub@db/jhub?password=s3cret", "?password="),
        ("postgresql://hub@db/jhub?sslmode=verify-full&sslpassword=s3cret", "?sslpassword="),
    ],
)
def test_hub_db_refuses_a_url_with_a_password_in_any_form_before_running_pg_dump(url, named):
    """The URL would reach pg_dump's argv; the message names --password-file, not the secret."""
    with pytest.raises(PgError) as refused:
        libpq_url(url)
    message = str(refused.value)
    assert named in message
    assert "--password-file" in message
    assert "s3cret" not in message


def test_hub_db_passes_a_url_without_a_password_as_libpq_takes_it():
    url = "postgresql+psycopg://hub@db:5432/jhub?sslmode=require"
    assert libpq_url(url) == "postgresql://hub@db:5432/jhub?sslmode=require"
