"""SovereignAuthenticator: company SSO over OpenID Connect.

Registered as the ``sovereign`` authenticator: ``c.JupyterHub.authenticator_class = "sovereign"``.
"""

from .authenticator import SovereignAuthenticator

__all__ = ["SovereignAuthenticator"]
