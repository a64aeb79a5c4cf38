"""Logins per second of the test identity provider alone, with 1, 4 and 16 logins at once (#18).

The load tests' logins went at about three a second, and the provider was taken for
the bound. This asks the provider (the real ``oidc-provider-mock`` process the sandbox
starts, on loopback) directly for what a hub's login costs it: the authorization
form's POST (the user's ``sub``, answered with a redirect carrying a code), the token
request (which signs an ID token) and the userinfo request.

    python benchmarks/bench_oidc.py --logins 200
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from sovereign_hub.processes import stop_process
from sovereign_hub.sandbox.hubprocess import free_port

REDIRECT = "http://127.0.0.1:1/hub/oauth_callback"
PROVIDER = [str(Path(sys.executable).with_name("oidc-provider-mock"))]


def start(argv: list[str], users: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    claims = [json.dumps({"sub": f"user-{i}", "groups": ["g"]}) for i in range(users)]
    process = subprocess.Popen(  # noqa: S603 (our venv's provider, fixed arguments)
        [*argv, "--port", str(port), *[a for c in claims for a in ("--user-claims", c)]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{issuer}/.well-known/openid-configuration", timeout=2).ok:
                return process, issuer
        except requests.ConnectionError:
            time.sleep(0.1)
    stop_process(process, timeout=10)
    raise RuntimeError(f"{argv[-1]} did not start")


def login(issuer: str, sub: str) -> None:
    session = requests.Session()
    params = {
        "client_id": "hub",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid profile",
        "state": secrets.token_hex(8),
        "nonce": secrets.token_hex(8),
    }
    answer = session.post(
        f"{issuer}/oauth2/authorize",
        params=params,
        data={"sub": sub},
        allow_redirects=False,
        timeout=120,
    )
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    token = session.post(
        f"{issuer}/oauth2/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=("hub", "secret"),
        timeout=120,
    )
    token.raise_for_status()
    assert "id_token" in token.json()
    info = session.get(
        f"{issuer}/userinfo",
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        timeout=120,
    )
    info.raise_for_status()
    assert info.json()["sub"] == sub


def measure(argv: list[str], logins: int, clients: int) -> float:
    process, issuer = start(argv, users=clients)
    try:
        login(issuer, "user-0")  # warm up (templates, first imports)
        t0 = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda i: login(issuer, f"user-{i % clients}"), range(logins)))
        return logins / (time.monotonic() - t0)
    finally:
        stop_process(process, timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logins", type=int, default=200, help="logins per measurement")
    args = parser.parse_args(argv)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    rates = {clients: measure(PROVIDER, args.logins, clients) for clients in (1, 4, 16)}
    print(f"{args.logins} logins per row; load average at the start {load}")
    print("| logins at once | logins per second |")
    print("| --- | --- |")
    for clients, rate in rates.items():
        print(f"| {clients} | {rate:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
