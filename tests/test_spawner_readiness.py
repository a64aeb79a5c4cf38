"""User pods carry a readiness probe: a slow server is waited for, a mute one named as such.

The hub and proxy are real; Kubernetes is the project's emulator (its kubelet
runs the probe, as a real kubelet would). JupyterHub's ``http_timeout`` is set
to 2 seconds so the behaviour shows in seconds, where on a busy cluster it is
a JupyterLab that needs more than the default 30.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import tests.test_spawner_hub as hub_tests
from sovereign_hub.spawner.readiness import readiness_probe
from tests.test_spawner_hub import SINGLEUSER, add_users, pod_of, progress_events, spawn

# The real hub and its policy copy, as the spawner's hub tests start them.
start_hub = hub_tests.start_hub
policy_copy = hub_tests.policy_copy

# A single-user server that sleeps before it listens, as a JupyterLab on a starved node does.
SLOW_SECONDS = 6
SLOW = [
    sys.executable,
    "-c",
    f"import os, sys, time; time.sleep({SLOW_SECONDS}); os.execv(sys.argv[1], sys.argv[1:])",
    str(SINGLEUSER),
]
# Runs, never listens (extra arguments such as --allow-root are ignored).
MUTE = [sys.executable, "-c", "import time; time.sleep(600)"]
# Who runs what: "stock" gets KubeSpawner's behaviour (no probe), "mute" never listens.
HOOK = f"""
def _per_user(spawner):
    name = spawner.user.name
    spawner.cmd = {SLOW!r}
    if name == "stock":
        spawner.readiness_probe = False
    if name == "mute":
        spawner.cmd = {MUTE!r}
c.SovereignSpawner.pre_spawn_hook = _per_user
"""


def test_the_probe_asks_the_servers_own_api_endpoint():
    assert readiness_probe(path="/user/ana/api", port=8888, https=False, period_seconds=2) == {
        "httpGet": {"path": "/user/ana/api", "port": 8888, "scheme": "HTTP"},
        "periodSeconds": 2,
        "timeoutSeconds": 3,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


def test_with_internal_tls_the_probe_checks_the_port_a_kubelet_cannot_present_a_client_cert():
    """jupyter_server requires a client certificate under internal_ssl; an HTTPS probe would
    never pass and every spawn would time out."""
    probe = readiness_probe(path="/a/api", port=443, https=True, period_seconds=0.2)
    assert probe["tcpSocket"] == {"port": 443}
    assert "httpGet" not in probe
    assert probe["periodSeconds"] == 1


async def test_a_slow_server_is_waited_for_and_a_mute_one_times_out_naming_the_probe(
    kube, core, start_hub, policy_copy
):
    hub = start_hub(policy_copy, start_timeout=20, http_timeout=2, extra_config=HOOK)
    add_users(hub, "us-analysts", "slow", "stock", "mute")
    with ThreadPoolExecutor(3) as pool:
        # The hub's REST call waits up to 10 s: a spawn that fails sooner answers 500.
        users = ("slow", "stock", "mute")
        answers = dict(
            zip(users, pool.map(lambda u: spawn(hub, u, profile="cpu-small"), users), strict=True)
        )
        # Ready within the REST call's 10 s (201) or after it (202): either way later than
        # http_timeout (2 s) after its process started, which stock KubeSpawner gives up at.
        assert answers["slow"].status_code in (201, 202), answers["slow"].text
        assert answers["mute"].status_code == 202
        slow, mute = pool.map(lambda user: progress_events(hub, user), ("slow", "mute"))

    # Waited for: the probe kept the pod unready until the server answered,
    # and the user saw why it took a while.
    assert slow[-1].get("ready") is True, slow
    pod = await pod_of(core, kube, "slow")
    # What the user saw while it waited: the kubelet's Unhealthy events (a spawn that was
    # ready within the REST call's window replays only its end on the progress stream).
    seen = await core.list_namespaced_event(
        kube.namespace, field_selector=f"involvedObject.name={pod.metadata.name}"
    )
    assert any("Readiness probe failed" in (e.message or "") for e in seen.items), seen.items
    if answers["slow"].status_code == 202:
        assert any("Readiness probe failed" in e.get("message", "") for e in slow), slow
    probe = pod.spec.containers[0].readiness_probe
    assert (probe.http_get.path, probe.http_get.port) == ("/user/slow/api", 8888)

    # The same server without the probe (stock KubeSpawner): the hub's http_timeout decides.
    stock = answers["stock"]
    assert stock.status_code == 500, stock.text
    assert "/user/stock/ after 2 seconds. Giving up." in hub.logs()

    # A server that never answers: a timeout that says the pod runs but never answered.
    assert mute[-1].get("failed") is True, mute
    message = mute[-1]["message"]
    assert "did not start within 20" in message, message
    assert "never answered its readiness probe" in message, message
    assert "connection refused" in message, message
