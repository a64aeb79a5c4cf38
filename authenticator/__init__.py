"""SovereignAuthenticator: company SSO over OpenID Connect (issue #5)."""
