"""What reaching a region through its gateway costs, against reaching its pods directly
(issue #22, item 7).

A real JupyterHub and proxy, and two regional clusters of the same shape (each its own
emulated API server, scheduler and process kubelet): region ``us`` in a flat network (the
proxy reaches pod IPs), region ``usgw`` behind a real ``sovereign-gateway`` process (mutual
TLS between the proxy and the gateway). Measured in the same run, alternating the two:

1. spawn to ready (POST /users/<u>/server until the server is ready), median per mode, and
   the ratio gateway / direct: what the gateway adds (JupyterHub's readiness check over
   TLS, and the time for the pod's route to reach the gateway through its watch);
2. proxy throughput: ``GET /user/<u>/api/status`` through the hub's proxy, 8 at a time,
   requests/s per mode and the ratio gateway / direct;
3. the same requests for the gateway's server at the region's entry point (the gateway's
   listener for browsers, no hub proxy), and the ratio entry point / gateway.

Run: `python benchmarks/bench_gateway.py [--rounds N] [--requests N] [--json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from bench_regions import cluster, spawn_to_ready, start_hub  # beside this script

from sovereign_hub.sandbox.gatewayprocess import Gateway
from sovereign_hub.sandbox.hubprocess import CHP, Hub
from sovereign_hub.sandbox.kube.cluster import Cluster
from sovereign_hub.sandbox.tls import local_certificates

ROOT = Path(__file__).resolve().parent.parent
NODE = {"allocatable": {"cpu": "32", "memory": "128Gi"}}
MODES = {"direct": "us", "gateway": "usgw"}


def hub_for(tmp: Path, eu: Cluster, us: Cluster, usgw: Cluster, gateway: Gateway, certs) -> Hub:
    doc = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    doc["regions"]["us"]["cluster"] = {"name": "us-east", "kubeconfig": str(us.kubeconfig)}
    doc["regions"]["usgw"] = {
        **doc["regions"]["us"],
        "displayName": "United States, through its gateway",
        "nodeRegions": ["us-west-1"],
        "cluster": {
            "name": "us-west",
            "kubeconfig": str(usgw.kubeconfig),
            "gateway": {"url": gateway.url, "publicUrl": gateway.public_url},
        },
    }
    doc["profiles"]["cpu-small"]["regions"] = ["eu", "us", "usgw"]
    doc["groups"]["everyone"] = {"profiles": ["cpu-small"], "regions": ["us", "usgw"]}
    client = certs["hub-client"]
    return start_hub(tmp, eu, doc, (
        "from sovereign_hub.gateway.hub import GatewayTLS, configure_hub",
        f"configure_hub(c, GatewayTLS(cert={str(client['cert'])!r}, "
        f"key={str(client['key'])!r}, ca={str(certs['gateway']['ca'])!r}), [{str(CHP)!r}])",
        # The entry point needs the hub's public URL; the test hub's is its bind URL.
        "c.JupyterHub.public_url = c.JupyterHub.bind_url + '/'",
    ))  # fmt: skip


async def throughput(
    url: str, token: str, requests: int, concurrency: int = 8, ca: Path | None = None
) -> float:
    """Requests per second for ``requests`` GETs of ``url``, ``concurrency`` at a time (an
    https ``url`` verified against ``ca``)."""
    headers = {"Authorization": f"token {token}"}
    left = requests

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.get(url) as response:
                if response.status != 200:
                    raise RuntimeError(f"{url}: {response.status}")
                await response.read()

    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(ca))) if ca else None
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        began = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return requests / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    spawn: dict[str, list[float]] = {mode: [] for mode in MODES}
    rate: dict[str, list[float]] = {mode: [] for mode in (*MODES, "entry")}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        certs = {
            n: local_certificates(tmp / "tls" / n, common_name=f"{n} CA")
            for n in ("gateway", "hub-client", "entry")
        }
        eu = cluster(tmp, "eu", "eu-central-1", NODE)
        us = cluster(tmp, "us", "us-east-1", NODE)
        usgw = cluster(tmp, "usgw", "us-west-1", NODE)
        gateway = Gateway(usgw, certs["gateway"], certs["hub-client"]["ca"], tmp / "gw.log",
                          entry_tls=certs["entry"])  # fmt: skip
        hub = hub_for(tmp, eu, us, usgw, gateway, certs)
        try:
            users = [f"u{i}" for i in range(args.rounds * len(MODES))]
            for user in users:
                hub.api("POST", f"/users/{user}")
            hub.api("POST", "/groups/everyone", json={"users": users})
            for i in range(args.rounds):
                for j, (mode, region) in enumerate(MODES.items()):
                    user = users[len(MODES) * i + j]
                    spawn[mode].append(spawn_to_ready(hub, user, region))
                    token = hub.api("POST", f"/users/{user}/tokens", json={}).json()["token"]
                    url = f"{hub.url}/user/{user}/api/status"
                    rate[mode].append(asyncio.run(throughput(url, token, args.requests)))
                    if mode == "gateway":  # the same server, at the region's entry point
                        url = f"{gateway.public_url}/user/{user}/api/status"
                        rate["entry"].append(asyncio.run(
                            throughput(url, token, args.requests, ca=certs["entry"]["ca"])
                        ))  # fmt: skip
        finally:
            hub.stop()
            gateway.stop()
            for c in (usgw, us, eu):
                c.stop()
    med = {mode: statistics.median(v) for mode, v in spawn.items()}
    rps = {mode: statistics.median(v) for mode, v in rate.items()}
    result = {
        "rounds": args.rounds,
        "requests": args.requests,
        "spawn_to_ready_direct_s": round(med["direct"], 3),
        "spawn_to_ready_gateway_s": round(med["gateway"], 3),
        "ratio_spawn_gateway_over_direct": round(med["gateway"] / med["direct"], 3),
        "proxy_rps_direct": round(rps["direct"], 1),
        "proxy_rps_gateway": round(rps["gateway"], 1),
        "ratio_rps_gateway_over_direct": round(rps["gateway"] / rps["direct"], 3),
        "entry_rps": round(rps["entry"], 1),
        "ratio_rps_entry_over_gateway": round(rps["entry"] / rps["gateway"], 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"spawn to ready, direct (flat):   {med['direct']:.3f} s (median of {args.rounds})")
    print(f"spawn to ready, through gateway: {med['gateway']:.3f} s")
    print(f"ratio gateway / direct:          {result['ratio_spawn_gateway_over_direct']:.2f}x")
    print(f"proxy throughput, direct:        {rps['direct']:.1f} req/s (8 at a time)")
    print(f"proxy throughput, gateway:       {rps['gateway']:.1f} req/s")
    print(f"ratio gateway / direct:          {result['ratio_rps_gateway_over_direct']:.2f}x")
    print(f"at the region's entry point:     {rps['entry']:.1f} req/s (no hub proxy)")
    print(f"ratio entry point / gateway:     {result['ratio_rps_entry_over_gateway']:.2f}x")


if __name__ == "__main__":
    main()
