"""Sovereign Hub: an enterprise JupyterHub distribution for Kubernetes.

Components live in their own packages: :mod:`sovereign_hub.policy` (the
policy document and the pure decision), :mod:`sovereign_hub.spawner`,
:mod:`sovereign_hub.authenticator`, :mod:`sovereign_hub.audit` and
:mod:`sovereign_hub.sandbox`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sovereign-hub")
except PackageNotFoundError:  # pragma: no cover - running from an unbuilt tree
    __version__ = "0.0.0"
