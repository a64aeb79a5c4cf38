"""The server's URLs for a region with an entry point for browsers (spawner/entry.py):
pure functions, and the refusal when the hub's own public URL is unknown. The whole flow,
with a real hub, is ``test_gateway_entry_hub.py``."""

from __future__ import annotations

import pytest

from sovereign_hub.policy import Cluster
from sovereign_hub.refusals import SpawnRefused
from sovereign_hub.spawner.entry import RegionalEntry, entry_env, on_host, origin

HUB_ENV = {
    "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/bob/gpu%20box/oauth_callback",
    "JUPYTERHUB_SERVICE_PREFIX": "/user/bob/gpu%20box/",
    "JUPYTERHUB_HOST": "",
    "JUPYTERHUB_PUBLIC_URL": "",
    "JUPYTERHUB_API_URL": "http://hub:8081/hub/api",
}


def test_the_servers_callback_and_public_url_move_to_the_entry_point_and_login_to_the_hub():
    assert entry_env(HUB_ENV, "https://us.hub.example", "https://hub.example") == {
        **HUB_ENV,
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "https://us.hub.example/user/bob/gpu%20box/oauth_callback",
        "JUPYTERHUB_PUBLIC_URL": "https://us.hub.example/user/bob/gpu%20box/",
        "JUPYTERHUB_HOST": "https://hub.example",
    }
    assert HUB_ENV["JUPYTERHUB_HOST"] == ""  # the input is not changed


def test_only_paths_move_host():
    assert on_host("https://us.hub.example/", "/user/a/") == "https://us.hub.example/user/a/"
    with pytest.raises(ValueError, match="not a path on the hub's host"):
        on_host("https://us.hub.example", "https://a.hub.example/user/a/")  # subdomains
    assert origin("https://hub.example:8443/hub/") == "https://hub.example:8443"


class _Spawner(RegionalEntry):
    def __init__(self, public_hub_url: str) -> None:
        super().__init__()
        self.public_hub_url = public_hub_url
        self._cluster = Cluster.model_validate(
            {
                "name": "us-east",
                "kubeconfig": "/k",
                "gateway": {"url": "https://gw.us.example", "publicUrl": "https://us.example"},
            }
        )


def test_an_entry_point_without_the_hubs_public_url_is_refused_with_what_to_set():
    with pytest.raises(SpawnRefused, match=r"https://us\.example.*JupyterHub\.public_url"):
        _Spawner("")._hub_origin("https://us.example")
    assert _Spawner("https://hub.example/hub/")._hub_origin("x") == "https://hub.example"
