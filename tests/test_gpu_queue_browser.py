"""The GPU queue in Chromium: a waiting user sees their place and leaves with Stop Server.

A real JupyterHub and proxy on the emulated cluster (sandbox/kube), driven by
Debian's Chromium through Playwright (never a downloaded browser).
"""

from __future__ import annotations

import re

import pytest

import tests.test_browser as browser_tests
import tests.test_gpu_queue_hub as queue_tests
from tests.test_spawner_hub import add_users, spawn

browser = browser_tests.browser
start_hub = queue_tests.start_hub
policy_copy = queue_tests.policy_copy
kube = queue_tests.kube
gpus = queue_tests.gpus


def log_in(browser, url: str, user: str):
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{url}/hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", "any")  # JupyterHub's dummy authenticator
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state()
    return page


@pytest.mark.parametrize("gpus", [2])
def test_the_progress_page_shows_the_place_and_stop_leaves_the_queue(
    browser, kube, start_hub, policy_copy, gpus
):
    hub = start_hub(queue_tests.queue_policy(policy_copy, quota=1))
    add_users(hub, "eu-researchers", "ana", "bob")
    assert spawn(hub, "ana", profile="gpu-a100").status_code in (201, 202)
    hub.wait_for_server("ana")  # ana holds the group's only GPU

    page = log_in(browser, hub.url, "bob")
    page.goto(f"{hub.url}/hub/spawn")
    page.check("input[value='gpu-a100']")
    page.click("form button[type=submit], form input[type=submit]")
    message = page.locator("#progress-message")
    message.filter(has_text=re.compile("number 1 of 1 in line")).wait_for(timeout=30_000)
    assert "your group's GPU quota is in use" in message.inner_text()
    page.screenshot(path=str(browser_tests.ARTIFACTS / "gpu-queue-waiting.png"))

    page.click("#stop-server-btn")
    hub.wait_for_server("bob", ready=False, timeout=30)
    log = hub.log_path.read_text(errors="replace")
    assert re.search(r"gpu_abandoned user='bob'.*detail='cancelled'", log)
    hub.api("DELETE", "/users/ana/server")
