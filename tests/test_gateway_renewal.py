"""The hub's proxy takes a renewed gateway client certificate without a hub restart: a real
JupyterHub starting a real configurable-http-proxy (``RenewingProxy``), and a real TLS
server on loopback standing in for a gateway, which admits only certificates of one CA.

The stand-in is a standard-library HTTPS server, not a gateway process: what is tested is
the proxy's TLS handshake, and a gateway would also need a cluster to start.
"""

from __future__ import annotations

import http.server
import ssl
import threading
import time

import pytest
import requests

from sovereign_hub.sandbox.hubprocess import CHP, Hub, free_port
from sovereign_hub.sandbox.tls import local_certificates
from tests.test_gateway_clients import CA, install

pytestmark = pytest.mark.integration  # it starts a hub and its proxy: not for `make unit`


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"the gateway stand-in admitted the proxy\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_proxy_presents_a_renewed_client_certificate_after_its_restart(tmp_path):
    server_tls = local_certificates(tmp_path / "gateway", common_name="gateway CA")
    trusted, stranger = CA(tmp_path / "trusted", "hub client CA"), CA(tmp_path / "old", "old CA")
    folder = tmp_path / "hub-client"
    folder.mkdir()
    cert, key = folder / "tls.crt", folder / "tls.key"

    install(stranger.leaf("old", cn="hub-proxy", dns=("hub-proxy",)), cert, key)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(trusted.path))
    context.load_cert_chain(server_tls["cert"], server_tls["key"])
    context.verify_mode = ssl.CERT_REQUIRED
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Answer)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    config = (
        'c.JupyterHub.authenticator_class = "dummy"\n'
        "from sovereign_hub.gateway.hub import GatewayTLS, configure_hub\n"
        f"configure_hub(c, GatewayTLS(cert={str(cert)!r}, key={str(key)!r}, "
        f"ca={str(server_tls['ca'])!r}), [{str(CHP)!r}])\n"
        "c.ConfigurableHTTPProxy.check_running_interval = 1\n"
        # A route to the stand-in, kept by the hub across proxy restarts.
        f"c.JupyterHub.services.append({{'name': 'gw', 'url': 'https://127.0.0.1:{port}'}})\n"
    )
    hub = Hub(tmp_path / "hub", config)
    try:
        url = f"{hub.url}/services/gw/"
        pid = (hub.workdir / "jupyterhub-proxy.pid").read_text()
        refused = requests.get(url, timeout=30)
        assert refused.status_code >= 500  # the stand-in refused the old certificate

        install(trusted.leaf("renewed", cn="hub-proxy", dns=("hub-proxy",)), cert, key)
        deadline = time.monotonic() + 60
        while True:
            try:  # the proxy's port is closed for a moment while it restarts
                answer = requests.get(url, timeout=30)
            except requests.ConnectionError:
                answer = None
            if answer is not None and answer.status_code == 200:
                break
            assert time.monotonic() < deadline, hub.logs()[-3000:]
            time.sleep(0.5)
        assert answer.text == "the gateway stand-in admitted the proxy\n"
        assert (hub.workdir / "jupyterhub-proxy.pid").read_text() != pid  # a new proxy
        assert "the proxy's gateway client certificate changed: restarting it" in hub.logs()
    finally:
        hub.stop()
        server.shutdown()
