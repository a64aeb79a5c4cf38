"""The sandbox in a real browser: headless Debian Chromium driven by Playwright.

Kubernetes is emulated by the sandbox. Playwright never downloads a browser:
it drives /usr/bin/chromium with the flags DESIGN.md gives. Screenshots are
saved under test-artifacts/ for review.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sovereign_hub.sandbox.oidc import login_via_provider
from tests.conftest import ROOT
from tests.test_sandbox import interrupt, launch, sandbox  # noqa: F401 - sandbox is a fixture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"  # package.json; `npm ci` installs it
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

if not Path(CHROMIUM).exists():
    pytest.skip(
        "Debian's chromium is not installed (make test installs it: apt-get install chromium)",
        allow_module_level=True,
    )
sync_playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed"
).sync_playwright


@pytest.fixture
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield chromium
        chromium.close()


def sign_in(browser, url: str, user: str, bypass_csp: bool = False):
    # bypass_csp lets the test inject axe-core into pages whose policy forbids any script
    # (the audit viewer's default-src 'none'); the pages themselves are unchanged.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp)
    page = context.new_page()
    page.goto(f"{url}/hub/oauth_login")
    page.fill("input[name=sub]", user)
    page.screenshot(path=str(ARTIFACTS / f"{user}-01-provider-login.png"))
    page.click("button:has-text('Authorize')")
    page.wait_for_load_state()
    return page


def test_researcher_runs_a_notebook_on_a_gpu_profile(browser, sandbox):  # noqa: F811
    page = sign_in(browser, sandbox["url"], "ana")
    page.wait_for_selector("#profile-gpu-a100")
    page.screenshot(path=str(ARTIFACTS / "ana-02-spawn-form.png"), full_page=True)
    assert page.is_visible("text=1 × NVIDIA A100 40 GB")
    page.check("#profile-gpu-a100")
    page.click("#spawn_form button[type=submit]")
    page.wait_for_url("**/user/ana/lab**", timeout=120_000)
    page.wait_for_selector(".jp-LauncherCard", timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "ana-03-jupyterlab.png"))
    page.click(".jp-LauncherCard[data-category='Notebook']")
    # Locators, not element handles: JupyterLab re-renders cells as it loads.
    editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
    editor.wait_for(timeout=60_000)
    # A cell run before the kernel is connected is not run at all: wait for it, as a person would.
    page.locator(".jp-StatusBar-Widget", has_text="Idle").first.wait_for(timeout=90_000)
    editor.click()
    page.keyboard.type("print(6 * 7)")
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-OutputArea-output", has_text="42").first
    try:
        output.wait_for(timeout=90_000)
    finally:
        page.screenshot(path=str(ARTIFACTS / "ana-04-after-run.png"))
    assert output.inner_text().strip() == "42"
    page.screenshot(path=str(ARTIFACTS / "ana-04-cell-output.png"))


def test_analyst_sees_no_gpu_profile_and_unentitled_user_sees_why(browser, sandbox):  # noqa: F811
    bob = sign_in(browser, sandbox["url"], "bob")
    bob.wait_for_selector("#profile-cpu-small")
    assert bob.query_selector("#profile-gpu-a100") is None
    assert bob.is_visible("text=United States (Virginia)")
    bob.screenshot(path=str(ARTIFACTS / "bob-02-spawn-form.png"), full_page=True)
    carol = sign_in(browser, sandbox["url"], "carol")
    assert carol.is_visible("text=none of your groups gives access to this hub")
    carol.screenshot(path=str(ARTIFACTS / "carol-02-no-access.png"), full_page=True)


def test_auditor_reviews_a_session_and_a_non_auditor_is_refused(browser, sandbox):  # noqa: F811
    url = sandbox["url"]
    ana, _ = login_via_provider(url, "ana")
    form = {
        "profile": "cpu-small",
        "region-cpu-small": "eu",
        "_xsrf": ana.cookies.get("_xsrf", path="/hub/"),
    }
    assert (
        ana.post(f"{url}/hub/spawn", data=form, timeout=60, allow_redirects=False).status_code
        == 302
    )
    sam = sign_in(browser, url, "sam")
    sam.goto(f"{url}/services/audit/")
    sam.wait_for_selector("#chart-denials svg")
    sam.screenshot(path=str(ARTIFACTS / "sam-00-audit-overview.png"), full_page=True)
    sam.goto(f"{url}/services/audit/timeline")
    sam.wait_for_selector("#timeline")
    sam.fill("input[name=user]", "ana")
    sam.click("form.filters button[type=submit]")
    sam.wait_for_selector("#timeline")
    events = sam.locator("#timeline tbody tr td:nth-child(2)").all_inner_texts()
    assert "spawn-requested" in events
    assert all(
        s == "ana" for s in sam.locator("#timeline tbody tr td:nth-child(4)").all_inner_texts()
    )
    sam.screenshot(path=str(ARTIFACTS / "sam-01-audit-timeline.png"), full_page=True)
    sam.click("#timeline tbody tr td:nth-child(4) a >> nth=0")
    sam.wait_for_selector("section.session", timeout=60_000)
    assert sam.is_visible("text=cpu-small")
    sam.screenshot(path=str(ARTIFACTS / "sam-02-audit-session.png"), full_page=True)
    bob = sign_in(browser, url, "bob")
    response = bob.goto(f"{url}/services/audit/")
    assert response is not None
    assert response.status == 403
    assert bob.is_visible("text=custom:audit:read")
    bob.screenshot(path=str(ARTIFACTS / "bob-03-audit-refused.png"), full_page=True)


def axe_violations(page, include: str | None = None) -> list[dict]:
    """axe-core's WCAG 2.1 A and AA violations on the page, or within ``include`` only."""
    assert AXE.exists(), f"{AXE} is missing: run `npm ci` (make install does)"
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async ([include, tags]) => {
            const context = include ? {include: [include]} : document;
            const result = await axe.run(context, {runOnly: {type: "tag", values: tags}});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.target.join(" ")),
            }));
        }""",
        [include, WCAG_AA],
    )


def assert_accessible(page, include: str | None = None, *, dark: bool = True) -> None:
    """No WCAG 2.1 AA violation in the light theme, and in JupyterHub's dark theme."""
    assert axe_violations(page, include) == [], page.url
    if dark:
        page.evaluate("document.documentElement.setAttribute('data-bs-theme', 'dark')")
        assert axe_violations(page, include) == [], f"{page.url} (dark theme)"
        page.evaluate("document.documentElement.setAttribute('data-bs-theme', 'light')")


def tab_to(page, selector: str, limit: int = 40) -> None:
    """Press Tab until ``selector`` has the focus, as a keyboard-only user would."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} cannot be reached with the Tab key")


def test_each_demo_users_view_is_accessible_and_pictured(browser, sandbox):  # noqa: F811
    """ana (spawn form by keyboard, home card), carol (refusal), ada (admin), sam (overview).

    Screenshots land in test-artifacts/browser/ (the docs' images are copied from there).
    """
    url = sandbox["url"]
    ana = sign_in(browser, url, "ana", bypass_csp=True)
    ana.wait_for_selector("#profile-cpu-small")
    assert_accessible(ana, "#spawn_form")
    # Keyboard only: choose the profile, reach Start, press Enter.
    ana.focus("body")
    tab_to(ana, "#profile-cpu-small")
    ana.keyboard.press("Space")
    assert ana.is_checked("#profile-cpu-small")
    tab_to(ana, "#spawn_form button[type=submit]")
    ana.keyboard.press("Enter")
    ana.wait_for_url("**/user/ana/**", timeout=120_000)
    ana.goto(f"{url}/hub/home")
    ana.wait_for_selector(".sovereign-server")
    assert ana.is_visible("text=Small (CPU)")
    assert_accessible(ana, ".sovereign-status")
    ana.screenshot(path=str(ARTIFACTS / "ana-05-home.png"))

    carol = sign_in(browser, url, "carol", bypass_csp=True)
    carol.wait_for_selector(".sovereign-refusal")
    assert carol.is_visible("#sovereign-sign-out")
    assert carol.is_visible("text=platform-team@example.com")
    assert_accessible(carol, ".error")
    carol.screenshot(path=str(ARTIFACTS / "carol-02-no-access.png"))

    ada = sign_in(browser, url, "ada", bypass_csp=True)
    # An admin with no notebook entitlement: the spawn page says so, whom to ask, and a way out.
    ada.wait_for_selector("#sovereign-no-access")
    assert ada.is_visible("#sovereign-sign-out")
    assert ada.is_visible("text=platform-team@example.com")
    assert_accessible(ada, "#spawn_form")
    ada.goto(f"{url}/hub/admin")
    ada.wait_for_selector("#sovereign-ledger")
    assert ada.locator("#sovereign-user-servers th", has_text="ana").count() == 1
    assert_accessible(ada, ".sovereign-admin")
    ada.locator(".sovereign-admin").screenshot(path=str(ARTIFACTS / "ada-01-admin-section.png"))

    sam = sign_in(browser, url, "sam", bypass_csp=True)
    for path, ready in [
        ("", "#chart-denials svg"),
        ("timeline", "#timeline"),
        ("session?user=ana", "main"),
        ("anomalies", "main"),
        ("chain", "main"),
    ]:
        sam.goto(f"{url}/services/audit/{path}")
        sam.wait_for_selector(ready)
        assert_accessible(sam, dark=False)  # the viewer has one theme of its own
    sam.goto(f"{url}/services/audit/")
    sam.wait_for_selector("#chart-denials svg")
    sam.screenshot(path=str(ARTIFACTS / "sam-00-audit-overview.png"))


NEWER = """      - version: "2026.12"
        image: quay.io/jupyter/base-notebook@sha256:{}
        released: 2026-12-01
""".format("c" * 64)


def test_upgrade_at_next_start_from_a_running_servers_card(browser, tmp_path):
    """A newer version appears while ana's server runs: the card offers it for the next start,
    by keyboard, accessibly in both themes, and then says which version the next start uses."""
    policy = tmp_path / "policy.yaml"
    shutil.copy(ROOT / "examples" / "policy.yaml", policy)
    running = launch(tmp_path, "--policy", str(policy))
    try:
        url = running["url"]
        ana = sign_in(browser, url, "ana", bypass_csp=True)
        ana.wait_for_selector("#profile-cpu-small")
        ana.check("#profile-cpu-small")
        ana.click("#spawn_form button[type=submit]")
        ana.wait_for_url("**/user/ana/**", timeout=120_000)
        policy.write_text(policy.read_text().replace("  pytorch:\n", NEWER + "  pytorch:\n", 1))
        ana.goto(f"{url}/hub/home")
        ana.wait_for_selector(".sovereign-upgrade-choice button")
        assert_accessible(ana, ".sovereign-status")
        ana.focus("body")
        tab_to(ana, ".sovereign-upgrade-choice button")
        ana.keyboard.press("Enter")
        ana.wait_for_selector(".sovereign-upgrade-chosen")
        assert "Your next start uses version 2026.12." in ana.inner_text(".sovereign-status")
        assert ana.is_visible("text=Keep version 2026.11 instead")
        assert_accessible(ana, ".sovereign-status")
        ana.screenshot(path=str(ARTIFACTS / "ana-06-upgrade-at-next-start.png"))
        # Stop, then start again from the start page with its defaults: the choice applies.
        ana.click("#stop")
        ana.wait_for_selector("#start", timeout=120_000)
        for _ in range(60):  # the start page shows the form once the stop has finished
            ana.goto(f"{url}/hub/spawn")
            if ana.locator("#profile-cpu-small").count():
                break
            ana.wait_for_timeout(1000)
        ana.check("#profile-cpu-small")
        ana.click("#spawn_form button[type=submit]")
        ana.wait_for_url("**/user/ana/**", timeout=120_000)
        ana.goto(f"{url}/hub/home")
        ana.wait_for_selector(".sovereign-version")
        assert ana.inner_text(".sovereign-version") == "2026.12"
    finally:
        interrupt(running["proc"])


def test_us_analyst_works_at_the_regions_entry_point(browser, tmp_path):
    """`--gateway-entry`: bob (US) signs in at the hub, starts a US server from the form and
    lands, after the hub's OAuth, on JupyterLab at the US gateway's entry point
    (https://localhost, another host than the hub's), where a kernel runs his cell: the
    page, its API and the kernel's WebSocket go to the region's gateway, not the hub's
    proxy. The sandbox CA is not the browser's, so its certificate errors are ignored."""
    running = launch(tmp_path, "--region-cluster", "us", "--gateway", "--gateway-entry")
    try:
        url = running["url"]
        match = re.search(r"at its entry point (https://\S+) \(", running["banner"])
        assert match, running["banner"]
        entry = match.group(1)
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      ignore_https_errors=True)  # fmt: skip
        page = context.new_page()
        page.goto(f"{url}/hub/oauth_login")
        page.fill("input[name=sub]", "bob")
        page.click("button:has-text('Authorize')")
        page.wait_for_selector("#profile-cpu-small")
        page.check("#profile-cpu-small")
        page.click("#spawn_form button[type=submit]")
        page.wait_for_url(f"{entry}/user/bob/lab**", timeout=120_000)
        page.locator(".jp-LauncherCard[data-category='Notebook']").first.click(timeout=120_000)
        editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
        editor.wait_for(timeout=60_000)
        page.locator(".jp-StatusBar-Widget", has_text="Idle").first.wait_for(timeout=90_000)
        editor.click()
        page.keyboard.type("print(6 * 7)")
        page.keyboard.press("Shift+Enter")
        output = page.locator(".jp-OutputArea-output", has_text="42").first
        try:
            output.wait_for(timeout=90_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / "bob-entry-point-cell-output.png"))
        assert page.url.startswith(f"{entry}/user/bob/")
        # The server's session cookie is the regional host's only.
        hosts = {
            c["domain"] for c in context.cookies() if c["name"].startswith("jupyterhub-user-bob")
        }
        assert hosts == {"localhost"}, hosts
    finally:
        interrupt(running["proc"])
