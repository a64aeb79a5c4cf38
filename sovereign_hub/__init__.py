"""Sovereign Hub: an enterprise JupyterHub distribution for Kubernetes.

Components live in their own packages: :mod:`sovereign_hub.policy` (the
policy document and the pure decision), :mod:`sovereign_hub.spawner`,
:mod:`sovereign_hub.authenticator`, :mod:`sovereign_hub.audit` and
:mod:`sovereign_hub.sandbox`.
"""

from __future__ import annotations

from functools import cache


@cache
def _version() -> str:
    # importlib.metadata costs tens of milliseconds to import: read it only when asked,
    # so `sovhub policy check` and the hub's imports do not pay for it.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sovereign-hub")
    except PackageNotFoundError:  # pragma: no cover - running from an unbuilt tree
        return "0.0.0"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
