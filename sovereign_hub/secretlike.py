"""Whether a configuration value is probably a credential, so it is not copied.

Used where values move from one file to another (``sovhub migrate z2jh``):
a plain environment variable in a Zero to JupyterHub values file may hold a
token, and copying it would put it in a second values file and a ConfigMap.

Two tests, either enough:

- the **name** says so (``TOKEN``, ``SECRET``, ``PASSWORD``, ``KEY``, …, as a
  word of an ``UPPER_SNAKE`` or ``camelCase`` name, so ``MONKEY_MODE`` is not
  caught but ``API_KEY`` and ``awsSecretAccessKey`` are);
- the **value** looks like a credential to Yelp's ``detect-secrets``: its
  pattern plugins (GitHub, GitLab, Slack, AWS, Stripe, … tokens, JWTs, private
  keys, passwords in URLs). Its two entropy plugins are left out: on short
  values such as ``C.UTF-8`` or a plain URL they flag nearly everything.
"""

from __future__ import annotations

import json
import re
from functools import cache

# At import, so `sovhub migrate` without the extra says which extra it needs.
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.core.scan import scan_line
from detect_secrets.settings import transient_settings

_SECRET_WORDS = frozenset(
    {
        "token", "secret", "password", "passwd", "pwd", "pass", "key", "apikey",
        "credential", "credentials", "private", "signature", "dsn",
    }
)  # fmt: skip
_EXCLUDED_PLUGINS = frozenset(
    {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"}
)


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


@cache
def _plugins() -> tuple[dict[str, str], ...]:
    classes = get_mapping_from_secret_type_to_class().values()
    return tuple(
        {"name": c.__name__} for c in sorted(classes, key=lambda c: c.__name__)
        if c.__name__ not in _EXCLUDED_PLUGINS
    )  # fmt: skip


def secret_reason(name: str, value: str) -> str | None:
    """Why ``name=value`` looks like a credential, or None when it does not."""
    hits = sorted(set(_words(name)) & _SECRET_WORDS)
    if hits:
        return f"its name contains {hits[0].upper()}"
    with transient_settings({"plugins_used": list(_plugins())}):
        found = sorted({s.type for s in scan_line(json.dumps(value))})
    if found:
        return f"its value looks like a credential ({', '.join(found)})"
    return None


__all__ = ["secret_reason"]
