"""Images: Dockerfiles (hadolint, digests, hashes, labels, non-root), lock files, the CPU
lock installed offline, the GPU lock's resolution, and `sovhub images pin` against a real
registry on 127.0.0.1 (Debian's docker-registry), with and without bearer-token auth."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sovereign_hub.images.build import DEFAULT_IMAGES, image_python, requirements_for
from sovereign_hub.images.build import IMAGES as IMAGE_SPECS
from sovereign_hub.images.pin import pin_dockerfile
from sovereign_hub.images.reference import ImageReferenceError, Reference
from sovereign_hub.policy import load_policy
from tests.conftest import ROOT, require_program, require_tool

IMAGES = ROOT / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
BIN = Path(sys.executable).parent
SOVHUB = str(BIN / "sovhub")
WHEELS = ROOT / ".tools" / "wheels" / "notebook-cpu"
GPU_LOCK = IMAGES / "notebook-gpu" / "requirements.lock"
GPU_RESOLVED = ROOT / ".tools" / "gpu-lock-resolved-py3.11.txt"


def logical_lines(path: Path) -> list[str]:
    """Dockerfile instructions with their continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        if raw.strip().startswith("#") and not current:
            continue
        current += raw.rstrip("\\").rstrip() + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [line for line in lines if line]


def test_there_are_the_four_images():
    assert {d.parent.name for d in DOCKERFILES} == {"hub", "proxy", "notebook-cpu", "notebook-gpu"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_passes(dockerfile):
    done = subprocess.run(
        [str(BIN / "hadolint"), str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_from_is_pinned_by_digest(dockerfile):
    stages: set[str] = set()
    froms = [line for line in logical_lines(dockerfile) if line.upper().startswith("FROM ")]
    assert froms
    args = {line.split()[1].split("=")[0] for line in logical_lines(dockerfile)
            if line.upper().startswith("ARG ")}  # fmt: skip
    for line in froms:
        words = line.split()
        image = next(w for w in words[1:] if not w.startswith("--"))
        if image in stages:
            continue  # an earlier build stage
        if image == "${BASE}":
            # The base built from Debian packages (`make images`), its package set recorded
            # in images/base/; BASE must be a declared build argument.
            assert "BASE" in args, f"{dockerfile}: FROM ${{BASE}} without ARG BASE"
            continue
        assert re.search(r"@sha256:[0-9a-f]{64}$", image), f"{dockerfile}: {line}"
        if len(words) >= 4 and words[-2].upper() == "AS":
            stages.add(words[-1])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_no_pip_install_runs_without_hashes(dockerfile):
    runs = [line for line in logical_lines(dockerfile) if line.upper().startswith("RUN ")]
    installs = [cmd for line in runs for cmd in re.split(r"&&|;", line) if "pip install" in cmd]
    # Every Python image installs its lock; the proxy (Node.js) installs no Python at all.
    assert bool(installs) == (dockerfile.parent.name != "proxy")
    for cmd in installs:
        hashed = "--require-hashes" in cmd and " -r " in f" {cmd} "
        # The one exception: our own wheel, built from this checkout, offline.
        own_wheel = "--no-index" in cmd and "--no-deps" in cmd and "/tmp/dist/" in cmd
        assert hashed or own_wheel, f"{dockerfile}: {cmd.strip()}"
        assert not re.search(r"--(index-url|extra-index-url|trusted-host)", cmd)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_labels_user_and_no_build_secrets(dockerfile):
    text = " ".join(logical_lines(dockerfile))
    for label in ("source", "revision", "version"):
        assert f"org.opencontainers.image.{label}=" in text, label
    users = [
        line.split()[1] for line in logical_lines(dockerfile) if line.upper().startswith("USER ")
    ]
    assert users
    assert users[-1].split(":")[0] not in ("0", "root")
    for line in logical_lines(dockerfile):
        if line.upper().startswith(("ARG ", "ENV ")):
            assert not re.search(r"(TOKEN|PASSWORD|SECRET|KEY)", line.upper()), line
    if dockerfile.parent.name in ("notebook-cpu", "notebook-gpu"):
        assert users[-1] == "1000"
    # Kubernetes ignores HEALTHCHECK; the chart's probes are the health checks.
    assert "HEALTHCHECK" not in text


@pytest.mark.parametrize(
    "lock", sorted(IMAGES.glob("*/*requirements.lock")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_every_locked_requirement_is_pinned_with_hashes(lock):
    text = lock.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    assert blocks
    for block in blocks:
        head = block.splitlines()[0]
        assert re.match(r"^[A-Za-z0-9_.\[\],-]+==[^ ;]+", head), head
        assert "--hash=sha256:" in block, head
    source = lock.with_name(lock.name.replace(".lock", ".in"))
    if source.exists():
        names = {re.split(r"[=<>\[ ]", line.strip())[0].lower().replace("_", "-")
                 for line in source.read_text().splitlines() if line.strip() and not line.startswith("#")}  # fmt: skip
        locked = {
            re.split(r"[=\[]", b.splitlines()[0])[0].lower().replace("_", "-") for b in blocks
        }
        assert names <= locked, names - locked


def test_the_cpu_lock_installs_offline_into_a_fresh_venv(tmp_path):
    """From the wheels CI downloaded (`make notebook-env`), with no network at all."""
    require_tool(WHEELS, "notebook-env")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
               "--find-links", str(WHEELS), "--require-hashes", "-r",
               str(IMAGES / "notebook-cpu" / "requirements.lock")]  # fmt: skip
    if shutil.which("unshare") and os.geteuid() == 0:
        install = ["unshare", "-n", *install]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    version = subprocess.run([str(venv / "bin" / "jupyterhub-singleuser"), "--version"],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip().startswith("6.1")


def test_the_gpu_lock_resolves_for_linux_x86_64_and_cpython_3_11():
    """CI resolves the GPU lock for linux x86_64 / CPython 3.11, the image's Python
    (`make gpu-lock-check`, metadata only, no CUDA wheel downloaded); every locked pin must
    come back unchanged, and nothing is locked that this platform would not install."""
    require_tool(GPU_RESOLVED, "gpu-lock-check")
    resolved = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", GPU_RESOLVED.read_text(), re.M))
    locked = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", GPU_LOCK.read_text(), re.M))
    assert resolved["torch"] == locked["torch"] == "2.9.1"
    assert resolved["torchvision"] == "0.24.1"
    assert "nvidia-cudnn-cu12" in resolved  # the CUDA build, for linux x86_64
    assert resolved == locked


def test_the_gpu_lock_is_for_the_python_of_the_images_debian_base():
    """notebook-gpu installs on Debian bookworm's CPython (recorded in python.packages): the
    lock has one pin per package and no marker that drops one for that Python, so the image
    gets exactly the locked set (a universal lock split numpy and networkx by version)."""
    packages = {}
    for line in (IMAGES / "base" / "python.packages").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version, arch = line.split("\t")
            packages[name] = (version, arch)
    python = image_python(packages)
    assert python.startswith("3.11.")
    text = GPU_LOCK.read_text()
    names = re.findall(r"^([A-Za-z0-9_.-]+)==", text, re.M)
    assert len(names) == len(set(names))
    kept = re.findall(r"^([A-Za-z0-9_.-]+)==", requirements_for(text, python), re.M)
    assert kept == names


def test_make_images_builds_the_gpu_image_only_when_named():
    """The default set (`make images`, CI) is unchanged; notebook-gpu is an explicit opt-in."""
    assert DEFAULT_IMAGES == ("hub", "proxy", "notebook-cpu")
    assert set(IMAGE_SPECS) == {*DEFAULT_IMAGES, "notebook-gpu"}

    def build_line(*args: str) -> str:
        done = subprocess.run(["make", "-n", "images", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=True)  # fmt: skip
        (line,) = [x for x in done.stdout.splitlines() if "sovhub images build" in x]
        return line.split("sovhub images build", 1)[1].strip()

    assert build_line() == ""
    assert build_line("IMAGES=notebook-gpu") == "notebook-gpu"
    usage = subprocess.run([SOVHUB, "images", "build", "--help"], capture_output=True,
                           text=True, timeout=60, check=True).stdout  # fmt: skip
    assert "none given: hub, proxy, notebook-cpu" in " ".join(usage.split())
    wrong = subprocess.run([SOVHUB, "images", "build", "notebook-tpu"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert wrong.returncode == 1
    assert (
        "no image 'notebook-tpu' (images: hub, proxy, notebook-cpu, notebook-gpu)" in wrong.stderr
    )


# -- sovhub images pin ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("python:3.12-slim", Reference("registry-1.docker.io", "library/python", "3.12-slim")),
        (
            "quay.io/jupyter/base-notebook:2026-11-02",
            Reference("quay.io", "jupyter/base-notebook", "2026-11-02"),
        ),
        ("127.0.0.1:5000/team/nb", Reference("127.0.0.1:5000", "team/nb", "latest")),
        ("ghcr.io/a/b@sha256:" + "a" * 64, Reference("ghcr.io", "a/b", "", "sha256:" + "a" * 64)),
    ],
)
def test_references_parse_like_docker(text, expected):
    assert Reference.parse(text) == expected


@pytest.mark.parametrize("text", ["quay.io/Jupyter/x:1", "x@sha256:abc", "x:bad tag"])
def test_bad_references_are_refused(text):
    with pytest.raises(ImageReferenceError):
        Reference.parse(text)


@pytest.fixture
def registry(tmp_path):
    from tests.registry import LocalRegistry

    require_program("docker-registry", "/usr/bin/docker-registry", "docker-registry")
    server = LocalRegistry(tmp_path / "registry")
    yield server
    server.stop()


def pin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SOVHUB, "images", "pin", *args], capture_output=True, text=True, timeout=120
    )


def test_pin_resolves_a_multi_arch_tag_and_updates_dockerfile_and_policy(tmp_path, registry):
    index = registry.push_multiarch("jupyter/base-notebook", "2026-12-01")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "# comment\nFROM "
        + registry.host
        + "/jupyter/base-notebook@sha256:"
        + "0" * 64
        + " AS base\nUSER 1000\n"
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text((ROOT / "examples" / "policy.yaml").read_text())
    ref = f"{registry.host}/jupyter/base-notebook:2026-12-01"
    shown = pin(ref, "--plain-http", "--dockerfile", str(dockerfile), "--policy", str(policy),
                "--channel", "datascience", "--version", "2026.12")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"-> {index} [multi-arch index (linux/amd64, linux/arm64)]" in shown.stdout
    assert f"+FROM {registry.host}/jupyter/base-notebook@{index} AS base" in shown.stdout
    assert "not written" in shown.stdout
    assert "0" * 64 in dockerfile.read_text()  # nothing written without --write
    written = pin(ref, "--plain-http", "--dockerfile", str(dockerfile), "--policy", str(policy),
                  "--channel", "datascience", "--version", "2026.12", "--write")  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert (
        dockerfile.read_text().splitlines()[1]
        == f"FROM {registry.host}/jupyter/base-notebook@{index} AS base"
    )
    text = policy.read_text()
    assert text.startswith("# Sovereign Hub example policy.")  # comments kept
    loaded = load_policy(policy).policy
    versions = {v.version: v.image for v in loaded.channels["datascience"].versions}
    assert versions["2026.12"] == f"{registry.host}/jupyter/base-notebook@{index}"
    assert versions["2026.11"].endswith(
        "876e3c3e40c4f0a25d3a16223a158a2d582b1ad77ac94269d43a5f6256eb4eec"
    )
    assert yaml.safe_load(text)["channels"]["datascience"]["versions"][-1]["version"] == "2026.12"


def test_pin_of_a_single_platform_tag_and_clear_errors(tmp_path, registry):
    digest = registry.push_image("team/hub", "1.0")
    done = pin(f"{registry.host}/team/hub:1.0", "--plain-http")
    assert done.returncode == 0
    assert f"-> {digest} [manifest]" in done.stdout
    missing = pin(f"{registry.host}/team/hub:9.9", "--plain-http")
    assert missing.returncode == 1
    assert "no such tag" in missing.stderr
    policy = tmp_path / "policy.yaml"
    policy.write_text((ROOT / "examples" / "policy.yaml").read_text())
    wrong = pin(f"{registry.host}/team/hub:1.0", "--plain-http", "--policy", str(policy),
                "--channel", "nope", "--version", "1")  # fmt: skip
    assert wrong.returncode == 1
    assert "no channel 'nope'" in wrong.stderr


def test_pin_follows_the_bearer_token_challenge(tmp_path):
    from tests.registry import LocalRegistry, TokenService

    require_program("docker-registry", "/usr/bin/docker-registry", "docker-registry")
    tokens = TokenService(tmp_path)
    server = LocalRegistry(tmp_path / "registry", tokens)
    try:
        digest = server.push_image("private/nb", "2.0")
        tokens.requests.clear()
        done = pin(f"{server.host}/private/nb:2.0", "--plain-http")
        assert done.returncode == 0, done.stderr
        assert f"-> {digest}" in done.stdout
        (asked,) = tokens.requests
        assert asked["service"] == ["test-registry"]
        assert asked["scope"] == ["repository:private/nb:pull"]
    finally:
        server.stop()
        tokens.close()


def test_the_sandbox_runs_notebooks_in_the_cpu_lock_environment():
    """The sandbox's notebook "pods" run `.venv-notebook`, built from images/notebook-cpu's lock."""
    from sovereign_hub.sandbox.run import NOTEBOOK_VENV, notebook_command

    require_tool(NOTEBOOK_VENV / "bin" / "jupyterhub-singleuser", "notebook-env")
    assert notebook_command() == NOTEBOOK_VENV / "bin" / "jupyterhub-singleuser"
    frozen = subprocess.run([str(NOTEBOOK_VENV / "bin" / "python"), "-m", "pip", "freeze"],
                            capture_output=True, text=True, timeout=120, check=True).stdout  # fmt: skip
    installed = dict(line.split("==") for line in frozen.splitlines() if "==" in line)
    lock = (IMAGES / "notebook-cpu" / "requirements.lock").read_text()
    for name in ("jupyterhub", "jupyterlab", "numpy", "pandas"):
        pins = re.findall(rf"^{name}==([^\s;\\]+)", lock, re.M | re.I)
        assert installed[name] in pins, name


def test_pin_writes_the_digest_into_the_build_argument_a_from_names():
    """`sovhub images pin --dockerfile` on this project's own Dockerfiles: their FROM lines
    are `FROM ${BASE}`, so the image is named (and pinned) in the ARG's default."""
    text = (IMAGES / "notebook-cpu" / "Dockerfile").read_text()
    ref = Reference.parse("localhost/sovereign-hub/base-python:bookworm")
    pinned = pin_dockerfile(text, ref, "sha256:" + "c" * 64)
    assert f"ARG BASE=localhost/sovereign-hub/base-python@sha256:{'c' * 64}\n" in pinned
    assert pinned.count("FROM ${BASE}") == text.count("FROM ${BASE}")
    # An ARG that no FROM uses, or of another repository, is left alone.
    other = (
        "ARG TOOL=localhost/sovereign-hub/base-python:bookworm\nARG BASE=debian:12\nFROM ${BASE}\n"
    )
    assert pin_dockerfile(other, ref, "sha256:" + "c" * 64) == other
    plain = "FROM localhost/sovereign-hub/base-python:bookworm AS build\n"
    assert pin_dockerfile(plain, ref, "sha256:" + "c" * 64) == (
        f"FROM localhost/sovereign-hub/base-python@sha256:{'c' * 64} AS build\n"
    )
