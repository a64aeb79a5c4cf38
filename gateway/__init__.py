"""The per-region gateway: one small reverse proxy in each regional cluster.

It routes ``/user/<name>/…`` (HTTP and WebSocket) to that user's notebook pod in
its own cluster, learning where each pod is from the cluster's API server
(:mod:`.routes`, :mod:`.watch`), and admits only the hub's proxy, which must
present a client certificate signed by the CA the gateway is given
(:mod:`.proxy`) and, when names are given, naming one of them (:mod:`.clients`).
:mod:`.main` is its command line, ``sovereign-gateway``. :mod:`.hub` holds the
hub side: the TLS settings the hub's proxy and HTTP client need to reach
gateways.
"""
