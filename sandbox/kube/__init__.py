"""An emulated Kubernetes for tests and the sandbox.

- :mod:`.apiserver`: the Kubernetes REST API on 127.0.0.1, backed by :mod:`.store`.
- :mod:`.scheduler`: binds pending pods to nodes of a declared inventory
  (:mod:`.inventory`), deciding with the pure rules in :mod:`.scheduling`.
- :mod:`.kubelet`: runs each bound pod's container as a local process on its
  own loopback address.

The scheduler and kubelet are ordinary API clients, so they also run against a
real API server (see :mod:`.cluster`).
"""
