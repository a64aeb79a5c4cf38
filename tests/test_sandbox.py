"""The README's first command: the whole sandbox, used as a newcomer would (over HTTP).

Kubernetes is emulated by the sandbox itself. The browser is a requests
session that follows redirects and posts the provider's login form and the
spawn form; the headless-Chromium walk-through belongs to the browser test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from sovereign_hub.audit.store import Filters, read
from sovereign_hub.sandbox.hubprocess import free_port
from sovereign_hub.sandbox.oidc import login_via_provider
from tests.conftest import require_postgres

SOVHUB = Path(sys.executable).with_name("sovhub")


def launch(tmp_path: Path, *extra: str) -> dict:
    """Start `python -m sovereign_hub.sandbox` and wait for its banner."""
    port = free_port()
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sovereign_hub.sandbox",
            "--port",
            str(port),
            "--state-dir",
            str(state),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    deadline = time.monotonic() + 90
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line)
        if "Press Ctrl-C" in line or time.monotonic() > deadline:
            break
    banner = "".join(lines)
    assert "Kubernetes is EMULATED" in banner, banner
    issuer = re.search(r"Identity provider:\s+(\S+)", banner).group(1)  # type: ignore[union-attr]
    store = re.search(r"Audit trail:\s+\S+ audit query (\S+)", banner).group(1)  # type: ignore[union-attr]
    return {
        "url": f"http://127.0.0.1:{port}",
        "port": port,
        "state": state,
        "proc": proc,
        "issuer": issuer,
        "store": store,
        "banner": banner,
    }


def interrupt(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


@pytest.fixture
def sandbox(tmp_path):
    running = launch(tmp_path)
    yield running
    interrupt(running["proc"])


def login(url: str, user: str) -> tuple[requests.Session, requests.Response]:
    return login_via_provider(url, user)


def start_from_the_form(
    session: requests.Session, url: str, user: str, profile: str, region: str
) -> None:
    """Post the spawn form as a browser would, and wait until JupyterLab answers."""
    data = {"profile": profile, f"region-{profile}": region,
            "_xsrf": session.cookies.get("_xsrf", path="/hub/")}  # fmt: skip
    started = session.post(f"{url}/hub/spawn", data=data, timeout=60, allow_redirects=False)
    assert started.status_code == 302, started.text[-1500:]
    for _ in range(240):
        lab = session.get(f"{url}/user/{user}/lab", timeout=30)
        if lab.status_code == 200 and "JupyterLab" in lab.text:
            break
        time.sleep(0.5)
    assert lab.status_code == 200
    assert "JupyterLab" in lab.text


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_sandbox_end_to_end_and_a_clean_stop(sandbox):
    url = sandbox["url"]
    # The EU researcher starts the GPU profile from the spawn form and gets JupyterLab.
    ana, page = login(url, "ana")
    assert page.status_code == 200
    form = ana.get(f"{url}/hub/spawn", timeout=30).content.decode()
    assert 'value="gpu-a100"' in form
    start_from_the_form(ana, url, "ana", "gpu-a100", "eu")

    # The US analyst's form has no GPU profile, and forging one is refused on the form.
    bob, _ = login(url, "bob")
    form = bob.get(f"{url}/hub/spawn", timeout=30).content.decode()
    assert 'value="gpu-a100"' not in form
    forged = bob.post(
        f"{url}/hub/spawn",
        data={"profile": "gpu-a100", "_xsrf": bob.cookies.get("_xsrf", path="/hub/")},
        timeout=60,
    )
    assert forged.status_code == 403
    assert "is not available to you" in forged.content.decode()

    # The user with no entitlement gets the clear page.
    _, carol = login(url, "carol")
    assert carol.status_code == 403
    assert "none of your groups gives access" in carol.text

    # The audit trail has it all, and its chain verifies.
    store = sandbox["state"] / "audit.sqlite"
    for _ in range(50):
        kinds = {r["schema"].split("/")[-2] for r in read(str(store))} if store.exists() else set()
        if {"login", "login-denied", "server-started", "spawn-denied"} <= kinds:
            break
        time.sleep(0.2)
    assert {"login", "login-denied", "server-started", "spawn-denied"} <= kinds
    key = (sandbox["state"] / "audit-hmac-key").read_text()
    verified = subprocess.run(
        [str(SOVHUB), "audit", "verify", str(store)],
        capture_output=True,
        text=True,
        env={**os.environ, "SOVEREIGN_AUDIT_HMAC_KEY": key},
        check=False,
    )
    assert verified.returncode == 0, verified.stdout

    # Ctrl-C stops everything it started.
    proc = sandbox["proc"]
    pod_ips = [r["data"].get("node") for r in read(str(store))]
    assert pod_ips
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    issuer_port = int(sandbox["issuer"].rsplit(":", 1)[1])
    assert not listening(sandbox["port"])
    assert not listening(issuer_port)
    leftovers = subprocess.run(
        ["pgrep", "-f", str(sandbox["state"])], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == ""


def test_the_sandbox_with_postgresql_as_the_audit_store(tmp_path):
    """`--audit-store postgresql` starts a real local PostgreSQL; events land there."""
    require_postgres()
    running = launch(tmp_path, "--audit-store", "postgresql")
    try:
        store = running["store"]
        assert store.startswith("postgresql://"), store
        pg_port = int(re.search(r":(\d+)/", store).group(1))  # type: ignore[union-attr]
        _, page = login(running["url"], "bob")
        assert page.status_code == 200
        login(running["url"], "carol")
        deadline = time.monotonic() + 30
        kinds: set[str] = set()
        while time.monotonic() < deadline and not {"login", "login-denied"} <= kinds:
            kinds = {r["schema"].rstrip("/").split("/")[-2] for r in read(store)}
            time.sleep(0.5)
        assert {"login", "login-denied"} <= kinds
        logins = list(read(store, Filters(user="bob", event="login")))
        assert logins
        assert logins[0]["data"]["subject"] == "bob"
    finally:
        interrupt(running["proc"])
    assert running["proc"].returncode == 0
    assert not listening(pg_port), "the sandbox's PostgreSQL outlived it"


def test_the_sandbox_with_the_us_region_in_an_emulated_cluster_of_its_own(tmp_path):
    """`--region-cluster us`: bob's server is created in the US cluster's API server, not the
    hub's, and the audit trail names that cluster. Both clusters are emulated."""
    running = launch(tmp_path, "--region-cluster", "us")
    try:
        url, banner = running["url"], running["banner"]
        assert "Region 'us' runs in its own emulated cluster 'us-sandbox'" in banner
        us_kubeconfig = re.search(r"'us-sandbox': \S+ \(KUBECONFIG=(\S+)\);", banner).group(1)
        hub_kubeconfig = re.search(r"Kubernetes API:\s+\S+\s+\(KUBECONFIG=(\S+)\)", banner).group(1)
        bob, _ = login(url, "bob")
        start_from_the_form(bob, url, "bob", "cpu-small", "us")

        def pods(kubeconfig: str) -> list[str]:
            done = subprocess.run(
                [sys.executable, "-c", LIST_PODS, kubeconfig], capture_output=True, text=True,
                check=True, timeout=60,
            )  # fmt: skip
            return done.stdout.split()

        assert pods(us_kubeconfig) == ["jupyter-bob"]
        assert "jupyter-bob" not in pods(hub_kubeconfig)
        for _ in range(50):
            started_events = list(
                read(running["store"], Filters(user="bob", event="server-started"))
            )
            if started_events:
                break
            time.sleep(0.2)
        assert started_events[0]["data"]["cluster"] == "us-sandbox"
    finally:
        interrupt(running["proc"])
    assert running["proc"].returncode == 0


def test_the_sandbox_reaches_the_us_region_through_its_gateway(tmp_path):
    """`--region-cluster us --gateway`: bob's JupyterLab is served through a real
    sovereign-gateway process (mutual TLS with the hub's proxy) in front of the US cluster,
    whose API server (emulated) tells the gateway where bob's pod is."""
    running = launch(tmp_path, "--region-cluster", "us", "--gateway")
    try:
        url, banner = running["url"], running["banner"]
        match = re.search(r"through its gateway (https://\S+) \(log: (\S+)\);", banner)
        assert match, banner
        gateway_log = Path(match.group(2))
        bob, _ = login(url, "bob")
        start_from_the_form(bob, url, "bob", "cpu-small", "us")
        # The gateway logs a request once its response is sent: the client may read the
        # page first (seen on a loaded machine).
        for _ in range(50):
            if "GET /user/bob/lab 200" in gateway_log.read_text():
                break
            time.sleep(0.2)
        assert "GET /user/bob/lab 200" in gateway_log.read_text()
    finally:
        interrupt(running["proc"])
    assert running["proc"].returncode == 0


def test_the_sandbox_refuses_a_gateway_without_a_region_cluster(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sovereign_hub.sandbox", "--state-dir", str(tmp_path), "--gateway"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--gateway needs at least one --region-cluster" in done.stderr


LIST_PODS = """
import asyncio, sys
from kubernetes_asyncio import client, config
async def main():
    api = await config.new_client_from_config(config_file=sys.argv[1])
    async with api:
        found = await client.CoreV1Api(api).list_pod_for_all_namespaces()
    print(" ".join(p.metadata.name for p in found.items))
asyncio.run(main())
"""


def test_a_region_cluster_the_policy_does_not_have_is_refused(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sovereign_hub.sandbox", "--state-dir", str(tmp_path),
         "--region-cluster", "mars"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "--region-cluster 'mars': the policy has no such region; its regions are eu, us" in (
        done.stderr
    )


def test_the_sandbox_refuses_an_unknown_audit_store(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sovereign_hub.sandbox", "--audit-store", "mysql://db/x",
         "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--audit-store" in done.stderr
    assert "mysql://db/x" in done.stderr


def test_the_sandbox_refuses_runtime_oci_without_built_images(tmp_path):
    """`--runtime oci` with a folder that has no image layout says to build them."""
    from sovereign_hub.sandbox.podnet import unavailable
    from tests.conftest import missing

    if why := unavailable():
        missing(f"network namespaces and nftables ({why})", "make system")
    (tmp_path / "images").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "sovereign_hub.sandbox", "--state-dir", str(tmp_path / "state"),
         "--runtime", "oci", "--images", str(tmp_path / "images")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert (
        f"--images: {tmp_path / 'images'}: no OCI image layout in it (build them: make images)"
        in (done.stderr)
    )
