"""The idle culler as the hub runs it: its API token never reaches its log.

Tornado logs a callback that raised with the callback's repr, which for the culler
carries its token. The real jupyterhub-idle-culler runs against a hub that does not
answer (as during a hub restart) for a few culls, as it is and through our module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

TOKEN = "s3cr3t-culler-token-0123456789"


def culler_output(module: str) -> str:
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, "--url=http://127.0.0.1:1/hub/api",
             "--cull-every=1", "--timeout=60"],
            env={**os.environ, "JUPYTERHUB_API_TOKEN": TOKEN},
            capture_output=True, text=True, timeout=4,
        )  # fmt: skip
        return done.stdout + done.stderr
    except subprocess.TimeoutExpired as ended:  # it culls until stopped
        out, err = ended.stdout or b"", ended.stderr or b""
        return (out if isinstance(out, str) else out.decode()) + (
            err if isinstance(err, str) else err.decode()
        )


@pytest.mark.parametrize(
    ("module", "leaks"), [("jupyterhub_idle_culler", True), ("sovereign_hub.culler", False)]
)
def test_the_cullers_token_stays_out_of_its_log_when_the_hub_is_away(module, leaks):
    output = culler_output(module)
    assert "Exception in callback" in output, output  # the failed cull was logged
    assert (TOKEN in output) is leaks, output


@pytest.mark.parametrize(
    ("module", "stops"), [("jupyterhub_idle_culler", False), ("sovereign_hub.culler", True)]
)
def test_the_culler_stops_at_jupyterhubs_sigint_even_when_started_with_it_ignored(module, stops):
    """JupyterHub stops a service with SIGINT and waits 10 s before SIGTERM; a hub started
    with SIGINT ignored (a background job of a non-interactive shell) hands that on."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--url=http://127.0.0.1:1/hub/api", "--cull-every=60"],
        env={**os.environ, "JUPYTERHUB_API_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        time.sleep(2)  # started and culling
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=3)
            stopped = True
        except subprocess.TimeoutExpired:
            stopped = False
        assert stopped is stops
    finally:
        process.kill()
        process.wait()
