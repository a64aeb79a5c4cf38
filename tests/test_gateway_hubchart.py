"""The hub chart's side of the regional gateways, rendered by the real Helm 4.1: the proxy
and the hub get the hub's client certificate, and may reach the gateways' addresses; the
hub's configuration gives JupyterHub's HTTP client the same certificate."""

from __future__ import annotations

import ssl

from traitlets.config import Config

from sovereign_hub.hubconfig import configure
from sovereign_hub.sandbox.tls import local_certificates
from tests.test_helm_chart import by_kind, helm_binary, render
from tests.test_hubconfig import chart_values, pod_site

SETS = ("proxy.gatewayClient.existingSecret=gw-client",
        "proxy.gatewayClient.egressCidrs={203.0.113.7/32}")  # fmt: skip
MOUNT = {"name": "gateway-client", "mountPath": "/etc/sovereign-hub/gateway-client",
         "readOnly": True}  # fmt: skip


def deployment(docs: list[dict], suffix: str) -> dict:
    (found,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith(suffix)]
    return found["spec"]["template"]["spec"]


def test_the_proxy_presents_the_hubs_client_certificate_to_gateways_and_may_reach_them():
    docs = render(helm_binary("4.1"), sets=SETS)
    proxy = deployment(docs, "-proxy")
    (chp,) = proxy["containers"]
    assert chp["command"][-3:] == [
        "--client-ssl-key=/etc/sovereign-hub/gateway-client/tls.key",
        "--client-ssl-cert=/etc/sovereign-hub/gateway-client/tls.crt",
        "--client-ssl-ca=/etc/sovereign-hub/gateway-client/ca.crt",
    ]
    assert chp["volumeMounts"] == [MOUNT]
    assert proxy["volumes"] == [{"name": "gateway-client", "secret": {"secretName": "gw-client"}}]
    hub = deployment(docs, "-hub")
    assert MOUNT in hub["containers"][0]["volumeMounts"]
    for name in ("-proxy", "-hub"):
        (policy,) = [
            p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith(name)
        ]
        assert {
            "to": [{"ipBlock": {"cidr": "203.0.113.7/32"}}],
            "ports": [{"port": 443, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}],
        } in policy["spec"]["egress"], name


def test_without_a_gateway_client_nothing_of_it_is_rendered():
    docs = render(helm_binary("4.1"))
    proxy = deployment(docs, "-proxy")
    assert not any(arg.startswith("--client-ssl") for arg in proxy["containers"][0]["command"])
    assert "volumes" not in proxy


def test_the_hub_config_gives_jupyterhubs_http_client_the_gateway_certificate(
    tmp_path, monkeypatch
):
    values = chart_values(tmp_path, sets=SETS)
    certs = local_certificates(tmp_path / "tls", common_name="gateways CA")
    folder = tmp_path / "gateway-client"
    folder.mkdir()
    for src, dst in (("cert", "tls.crt"), ("key", "tls.key"), ("ca", "ca.crt")):
        (folder / dst).write_bytes(certs[src].read_bytes())
    monkeypatch.setenv("SOVEREIGN_GATEWAY_CLIENT_DIR", str(folder))
    c = Config()
    configure(c, values, pod_site(tmp_path, {"proxy-token": "p"}))
    context = c.JupyterHubHTTPClient.connector_options["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert "gateways CA" in str(context.get_ca_certs())

    (tmp_path / "plain").mkdir()
    plain = Config()
    configure(plain, chart_values(tmp_path / "plain"), pod_site(tmp_path / "plain"))
    assert "JupyterHubHTTPClient" not in plain
