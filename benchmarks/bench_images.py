"""Images (issue #16): build time, size, and start to ready under runc.

* Build time per image, warm (Debian bases and wheels cached in .tools/), as `make images`
  runs it; with --cold the bases are rebuilt too (the .deb and wheel caches stay: CI keeps
  them in .tools/).
* Size: compressed (what a node pulls: manifest, config and gzip layers) and uncompressed
  (the layers' tar bytes, which is what `docker images` shows), against the published sizes
  of the images a Zero to JupyterHub user pulls instead (sources in PUBLISHED).
* Start to ready: from `runc run` to the first HTTP answer (proxy: /api/routes, hub:
  /hub/health, notebook: /api), median of --runs, against the same server started as a
  plain process from the host's venv in the same run (the ratio is the container's cost).

Run: `python benchmarks/bench_images.py [--build] [--cold] [--runs N] [--json]` after
`make images` (or with --build).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from sovereign_hub.images.build import DEFAULT_IMAGES, Settings, build_image, load_index
from sovereign_hub.images.oci import blob_path, read_manifest
from sovereign_hub.images.runc import Container, RunOptions, unpack
from sovereign_hub.sandbox.hubprocess import free_port

ROOT = Path(__file__).resolve().parent.parent
# Published sizes, uncompressed as `docker images` reports them (the sources give no
# compressed size). Each is the figure its maintainers posted, with the thread.
PUBLISHED = {
    "hub": ("quay.io/jupyterhub/k8s-hub", 413e6,
            "zero-to-jupyterhub-k8s PR #2920 (2022): k8s-hub 413 MB, k8s-hub-slim 256 MB"),
    "notebook-cpu": ("quay.io/jupyter/base-notebook", 829e6,
                     "docker-stacks PR #1825 (2022): base-notebook 829 MB"),
}  # fmt: skip


def uncompressed(layout: Path, tag: str) -> int:
    _, manifest = read_manifest(layout, tag)
    total = 0
    for layer in manifest["layers"]:
        with gzip.open(blob_path(layout, layer["digest"])) as stream:
            while chunk := stream.read(1 << 20):
                total += len(chunk)
    return total


def wait(url: str, seconds: float = 120, **kwargs: object) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2, **kwargs)  # type: ignore[arg-type]
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise TimeoutError(url)


def commands(
    name: str, port: int, work: Path, proxy_api: int = 0
) -> tuple[tuple[str, ...], str, dict, Path | None]:
    """(command, ready URL, request kwargs, config dir to mount) for one server."""
    if name == "proxy":
        return (("configurable-http-proxy", "--ip=127.0.0.1", f"--port={free_port()}",
                 "--api-ip=127.0.0.1", f"--api-port={port}"),
                f"http://127.0.0.1:{port}/api/routes",
                {"headers": {"Authorization": "token t"}}, None)  # fmt: skip
    if name == "hub":
        config = work / "hubconfig"
        config.mkdir(exist_ok=True)
        (config / "jupyterhub_config.py").write_text(
            f"c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{port}'\n"
            f"c.JupyterHub.bind_url = 'http://127.0.0.1:{free_port()}'\n"
            "c.JupyterHub.authenticator_class = 'dummy'\n"
            "c.JupyterHub.db_url = 'sqlite:///:memory:'\n"
            "c.JupyterHub.cookie_secret = bytes(32)\n"
            "c.ConfigurableHTTPProxy.should_start = False\n"
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{proxy_api}'\n"
            "c.ConfigurableHTTPProxy.auth_token = 't'\n"
        )
        return (("jupyterhub", "--config=/usr/local/etc/sovereign-hub/jupyterhub_config.py"),
                f"http://127.0.0.1:{port}/hub/health", {}, config)  # fmt: skip
    return (("jupyter-lab", "--ip=127.0.0.1", f"--port={port}", "--no-browser",
             "--IdentityProvider.token=t", "--ServerApp.root_dir=/tmp"),
            f"http://127.0.0.1:{port}/api", {}, None)  # fmt: skip


def host_command(name: str, command: tuple[str, ...], config: Path | None) -> list[str]:
    if name == "proxy":
        return [str(ROOT / "node_modules" / ".bin" / "configurable-http-proxy"), *command[1:]]
    if name == "hub":
        return [
            str(ROOT / ".venv" / "bin" / "jupyterhub"),
            f"--config={config}/jupyterhub_config.py",
        ]
    # The benchmark runs as root; the container runs as jovyan and needs no such flag.
    return [str(ROOT / ".venv-notebook" / "bin" / "jupyter-lab"), *command[1:], "--allow-root"]


def start_times(name: str, layout: Path, tag: str, runs: int) -> tuple[float, float]:
    """Median seconds to ready: in a runc container, and as a host process."""
    container, host = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = unpack(layout, tag, work / "bundle")
        # The hub registers its routes with a proxy at start and exits without one.
        proxy_api = free_port()
        chp = subprocess.Popen(  # noqa: S603 - the repository's own CHP
            [str(ROOT / "node_modules" / ".bin" / "configurable-http-proxy"), "--ip=127.0.0.1",
             f"--port={free_port()}", "--api-ip=127.0.0.1", f"--api-port={proxy_api}"],
            env={"PATH": "/usr/bin:/bin", "CONFIGPROXY_AUTH_TOKEN": "t"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait(f"http://127.0.0.1:{proxy_api}/api/routes", headers={"Authorization": "token t"})
            for i in range(runs):
                measure(name, work, bundle, i, proxy_api, container, host)
        finally:
            chp.terminate()
            chp.wait(10)
    return statistics.median(container), statistics.median(host)


def measure(
    name: str, work: Path, bundle: Path, i: int, proxy_api: int,
    container: list[float], host: list[float],
) -> None:  # fmt: skip
    """One start of ``name`` in a runc container, then one as a host process."""
    port = free_port()
    command, url, kwargs, config = commands(name, port, work, proxy_api)
    binds = {"/usr/local/etc/sovereign-hub": config} if config else {}
    started = time.monotonic()
    env = {"HOME": "/tmp", "CONFIGPROXY_AUTH_TOKEN": "t"}  # noqa: S108 - in the container
    options = RunOptions(args=command, binds=binds, env=env)
    box = Container(bundle, options, work / f"{name}-{i}.log")
    try:
        wait(url, **kwargs)
        container.append(time.monotonic() - started)
    finally:
        box.stop()
    port = free_port()
    command, url, kwargs, config = commands(name, port, work, proxy_api)
    started = time.monotonic()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "CONFIGPROXY_AUTH_TOKEN": "t"}
    process = subprocess.Popen(  # noqa: S603 - our own venv's programs
        host_command(name, command, config), cwd=work, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait(url, **kwargs)
        host.append(time.monotonic() - started)
    finally:
        process.terminate()
        process.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="build (warm) before measuring")
    parser.add_argument("--cold", action="store_true", help="rebuild the Debian bases too")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    index_path = ROOT / ".tools" / "images" / "images.json"
    if args.build or args.cold:
        settings = Settings.for_checkout(ROOT)
        if args.cold:
            for base in ("python", "node"):
                shutil.rmtree(settings.cache / "images" / f"base-{base}", ignore_errors=True)
        from sovereign_hub.images.build import save_index

        for name in DEFAULT_IMAGES:
            built = build_image(settings, name)
            results[name] = {"build_seconds": round(built.seconds, 1),
                             "base_built": built.base.built}  # fmt: skip
            print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
            save_index(index_path, [built.artifact])
    index = load_index(index_path)
    for name, artifact in index.items():
        row = results.setdefault(name, {})
        row["digest"] = artifact.digest
        row["compressed_mb"] = round(artifact.size / 1e6, 1)
        row["uncompressed_mb"] = round(uncompressed(artifact.layout, artifact.tag) / 1e6, 1)
        if name in PUBLISHED:
            image, size, source = PUBLISHED[name]
            row["published"] = {"image": image, "uncompressed_mb": size / 1e6, "source": source}
            row["size_ratio_to_published"] = round(row["uncompressed_mb"] * 1e6 / size, 2)
        in_container, on_host = start_times(name, artifact.layout, artifact.tag, args.runs)
        row["ready_seconds_runc"] = round(in_container, 2)
        row["ready_seconds_host_process"] = round(on_host, 2)
        row["ready_ratio_runc_to_host"] = round(in_container / on_host, 2)
        print(f"{name}: {json.dumps(row)}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for name, row in results.items():
            print(f"{name}: {json.dumps(row)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
