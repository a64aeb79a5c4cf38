"""Image references and digests: resolve tags through the OCI distribution API, pin them."""
