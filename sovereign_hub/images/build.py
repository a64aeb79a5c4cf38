"""Build the images reproducibly: a build context of hashed inputs, buildah, an OCI layout.

Each image is its `images/<name>/Dockerfile` built by `buildah bud --isolation=chroot` (no
daemon, no user namespace, which this machine and many CI runners cannot give) on a base
from Debian packages (`debian.py`), from a context directory that holds only checked inputs:

* `requirements.lock` and exactly the wheels it pins, downloaded once into `.tools/wheels/`
  with `pip download --require-hashes --only-binary=:all:` (the hashes are checked again
  when the Dockerfile installs them, with no index);
* for the hub, our own wheel, built from the files git knows (nothing stray from the work
  tree) with the build tools of `images/hub/build-requirements.lock`;
* for the proxy, `node_modules` installed by `npm ci` from the committed `package-lock.json`
  (npm checks each tarball's integrity hash).

Reproducible by construction: SOURCE_DATE_EPOCH is the time of the commit built, buildah's
`--timestamp` sets it as the creation time and as every file's time in the new layer,
`--layers=false` gives one layer over the base, byte code is compiled with hash-based
invalidation, and nothing downloaded in the build is left in it. The same inputs give the
same manifest digest, which `tests/test_image_build.py` checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .debian import Base, build_base, deb_hashes
from .oci import read_manifest
from .sbom import debian_components, make_sbom, npm_components, python_components, write_sbom

LOCK_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


class BuildError(RuntimeError):
    """A build step that failed; the message names the image, the step and the log."""


@dataclass(frozen=True, slots=True)
class ImageSpec:
    name: str
    base: str
    lock: str | None = None
    own_wheel: bool = False
    npm: bool = False
    opt_in: bool = False


IMAGES: dict[str, ImageSpec] = {
    "hub": ImageSpec("hub", "python", lock="images/hub/requirements.lock", own_wheel=True),
    "proxy": ImageSpec("proxy", "node", npm=True),
    "notebook-cpu": ImageSpec(
        "notebook-cpu", "python", lock="images/notebook-cpu/requirements.lock"
    ),
    # 4+ GB of CUDA wheels: built only when named (`make images IMAGES=notebook-gpu`).
    "notebook-gpu": ImageSpec(
        "notebook-gpu", "python", lock="images/notebook-gpu/requirements.lock", opt_in=True
    ),
}

#: What `make images` (`sovhub images build` with no names) builds: every image but the
#: opt-in ones.
DEFAULT_IMAGES: tuple[str, ...] = tuple(name for name, spec in IMAGES.items() if not spec.opt_in)


@dataclass(frozen=True, slots=True)
class Artifact:
    """A built image as the release needs it: where its layout is, its digest, its SBOM."""

    name: str
    layout: Path
    tag: str
    digest: str
    size: int
    sbom: Path

    def as_dict(self) -> dict[str, object]:
        return {"layout": str(self.layout), "tag": self.tag, "digest": self.digest,
                "size": self.size, "sbom": str(self.sbom)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Built:
    name: str
    layout: Path
    tag: str
    digest: str
    size: int
    seconds: float
    base: Base
    sbom: Path
    context: Path

    @property
    def artifact(self) -> Artifact:
        return Artifact(self.name, self.layout, self.tag, self.digest, self.size, self.sbom)


def save_index(path: Path, artifacts: list[Artifact]) -> None:
    """Record what `make images` built (`.tools/images/images.json`) for `make release`."""
    known = load_index(path) if path.exists() else {}
    known.update({a.name: a for a in artifacts})
    path.write_text(json.dumps({n: a.as_dict() for n, a in sorted(known.items())}, indent=1))


def load_index(path: Path) -> dict[str, Artifact]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BuildError(f"{path}: no record of built images ({exc}); run `make images`") from None
    return {name: Artifact(name, Path(d["layout"]), d["tag"], d["digest"], d["size"],
                           Path(d["sbom"])) for name, d in data.items()}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Settings:
    root: Path
    cache: Path
    version: str
    revision: str
    epoch: int
    log: Path

    @classmethod
    def for_checkout(cls, root: Path, version: str | None = None) -> Settings:
        """Settings from the git checkout at ``root``: the commit's id and time."""

        def git(*args: str) -> str:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
            return done.stdout.strip() if done.returncode == 0 else ""

        from sovereign_hub import __version__

        epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or git("log", "-1", "--format=%ct") or 0)
        cache = root / ".tools"
        (cache / "images").mkdir(parents=True, exist_ok=True)
        return cls(root, cache, version or __version__, git("rev-parse", "HEAD") or "unknown",
                   epoch, cache / "images" / "build.log")  # fmt: skip


def base_epoch(root: Path) -> int:
    """The base's own SOURCE_DATE_EPOCH: when its definition last changed, so a new commit
    elsewhere does not rebuild it (and the cached one keeps its digest)."""
    done = subprocess.run(
        ["git", "-C", str(root), "log", "-1", "--format=%ct", "--", "images/base"],
        capture_output=True, text=True,
    )  # fmt: skip
    return int(done.stdout.strip() or 0)


def _run(command: list[str], log: Path, what: str, **kwargs: Any) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(command)}\n".encode())
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=out, **kwargs)
    if done.returncode != 0:
        raise BuildError(f"{what} failed (exit {done.returncode}); see {log}")


def locked_hashes(lock: Path) -> set[str]:
    return set(LOCK_HASH.findall(lock.read_text()))


def image_python(packages: dict[str, tuple[str, str]]) -> str:
    """The base's CPython version (e.g. 3.11.2), from its Debian package's version."""
    for name, (version, _) in packages.items():
        if re.fullmatch(r"python3\.\d+", name):
            return version.split("-")[0].split("+")[0]
    raise BuildError("the base has no python3.X package")


def requirements_for(lock_text: str, python: str) -> str:
    """The blocks of a universal lock whose markers hold for CPython ``python`` on Linux
    x86_64, markers dropped. pip evaluates markers against the interpreter running it, even
    with `--python-version`, so a download for the image's Python must be filtered first (a
    lock may pin one version below 3.11.5 and another from it)."""
    from packaging.markers import Marker

    env = {"python_version": ".".join(python.split(".")[:2]), "python_full_version": python,
           "implementation_name": "cpython", "platform_python_implementation": "CPython",
           "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
           "platform_machine": "x86_64"}  # fmt: skip
    kept = []
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock_text.strip()):
        head, _, rest = block.partition("\n")
        requirement, _, marker = head.rstrip(" \\").partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate(env):
            continue
        kept.append(f"{requirement.strip()} \\\n{rest}")
    return "\n".join(kept) + "\n"


def download_wheels(settings: Settings, lock: Path, python: str) -> tuple[Path, Path]:
    """The wheels ``lock`` pins for CPython ``python`` (the image's, not the host's: a lock's
    markers may compare the full version), in `.tools/wheels/<image>`, hashes checked."""
    wheels = settings.cache / "wheels" / lock.parent.name
    wheels.mkdir(parents=True, exist_ok=True)
    filtered = settings.cache / "images" / f"{lock.parent.name}-py{python}.requirements"
    filtered.write_text(requirements_for(lock.read_text(), python))
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes",
               "--only-binary=:all:", "--python-version", python, "-r", str(filtered),
               "-d", str(wheels)]  # fmt: skip
    # From the cache alone when it has every wheel (no index asked), else from the index.
    offline = subprocess.run(
        [*command, "--no-index", "--find-links", str(wheels)], capture_output=True
    )
    if offline.returncode != 0:
        _run(command, settings.log, f"downloading the wheels of {lock}")
    return wheels, filtered


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def build_own_wheel(settings: Settings, into: Path) -> Path:
    """Our wheel, from the files git tracks (and new, unignored ones), with hashed tools."""
    tools = settings.cache / "images" / "build-venv"
    lock = settings.root / "images" / "hub" / "build-requirements.lock"
    stamp = tools / f".installed-{hashlib.sha256(lock.read_bytes()).hexdigest()[:12]}"
    if not stamp.exists():
        shutil.rmtree(tools, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(tools)], settings.log, "the build venv")
        _run([str(tools / "bin" / "python"), "-m", "pip", "install", "--quiet",
              "--require-hashes", "--only-binary=:all:", "-r", str(lock)],
             settings.log, "installing the build tools")  # fmt: skip
        stamp.touch()
    files = subprocess.run(
        ["git", "-C", str(settings.root), "ls-files", "-z", "--cached", "--others",
         "--exclude-standard"], capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="sovhub-src-") as tmp:
        source = Path(tmp)
        for name in filter(None, files):
            path = settings.root / name
            if path.is_file():
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, source / name)
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(settings.epoch)}
        _run([str(tools / "bin" / "python"), "-m", "pip", "wheel", "--quiet", "--no-deps",
              "--no-build-isolation", "-w", str(into), str(source)],
             settings.log, "building the sovereign-hub wheel", env=env)  # fmt: skip
    (wheel,) = into.glob("sovereign_hub-*.whl")
    return wheel


def prepare_context(settings: Settings, spec: ImageSpec, context: Path, base: Base) -> Path:
    """A fresh build context for ``spec`` in ``context`` (see the module docstring)."""
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    if spec.lock:
        lock = settings.root / spec.lock
        wheels, filtered = download_wheels(settings, lock, image_python(base.packages))
        shutil.copy2(lock, context / "requirements.lock")
        wanted = locked_hashes(filtered)
        (context / "wheels").mkdir()
        for wheel in sorted(wheels.glob("*.whl")):
            if hashlib.sha256(wheel.read_bytes()).hexdigest() in wanted:
                _link(wheel, context / "wheels" / wheel.name)
    if spec.own_wheel:
        (context / "dist").mkdir()
        build_own_wheel(settings, context / "dist")
    if spec.npm:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(settings.root / name, context / name)
        _run(["npm", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund",
              "--loglevel=error", "--cache", str(settings.cache / "npm-cache")],
             settings.log, "npm ci for the proxy", cwd=context)  # fmt: skip
    return context


def import_base(settings: Settings, base: Base) -> None:
    """Copy the base's layout into buildah's local storage under the Dockerfiles' BASE."""
    source, target = f"oci:{base.layout}:bookworm", f"containers-storage:{base.spec.image}"
    _run(["skopeo", "copy", "--quiet", source, target], settings.log, f"importing {target}")


def build_image(
    settings: Settings,
    name: str,
    *,
    output: Path | None = None,
    context: Path | None = None,
    reuse_context: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> Built:
    """Build image ``name`` into the OCI layout ``output`` (default `.tools/images/oci/<name>`),
    tagged with the version; returns its manifest digest and compressed size.

    The build context is written to ``context`` (default `.tools/images/context/<name>`);
    with ``reuse_context`` an existing one is built again as it is (the same inputs, only
    the build steps repeated: what the reproducibility check needs)."""
    if name not in IMAGES:
        raise BuildError(f"no image {name!r} (images: {', '.join(IMAGES)})")
    spec = IMAGES[name]
    started = time.monotonic()
    base = build_base(settings.root, spec.base, cache=settings.cache,
                      epoch=base_epoch(settings.root), log=settings.log)  # fmt: skip
    for change in base.changes:
        progress(f"base {spec.base}: {change}")
    import_base(settings, base)
    context = context or settings.cache / "images" / "context" / name
    if not (reuse_context and context.is_dir()):
        prepare_context(settings, spec, context, base)
    output = output or settings.cache / "images" / "oci" / name
    local = f"localhost/sovereign-hub/{name}:{settings.version}"
    _run(["buildah", "bud", "--quiet", "--isolation", "chroot", "--layers=false",
          "--timestamp", str(settings.epoch), "--format", "oci",
          "--build-arg", f"BASE={base.spec.image}",
          "--build-arg", f"VERSION={settings.version}",
          "--build-arg", f"REVISION={settings.revision}",
          "--build-arg", f"SOURCE_DATE_EPOCH={settings.epoch}",
          "-f", str(settings.root / "images" / name / "Dockerfile"), "-t", local, str(context)],
         settings.log, f"building image {name}")  # fmt: skip
    shutil.rmtree(output, ignore_errors=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    _run(["buildah", "push", "--quiet", local, f"oci:{output}:{settings.version}"],
         settings.log, f"writing image {name} as an OCI layout")  # fmt: skip
    # Nothing is kept in buildah's storage between builds but the bases: a second build
    # cannot borrow from the first.
    subprocess.run(["buildah", "rmi", "--force", local], capture_output=True)
    subprocess.run(["buildah", "rmi", "--prune"], capture_output=True)
    descriptor, manifest = read_manifest(output, settings.version)
    size = descriptor.size + manifest["config"]["size"] + sum(x["size"] for x in manifest["layers"])
    sbom = write_image_sbom(settings, spec, base, context, descriptor.digest)
    return Built(name, output, settings.version, descriptor.digest, size,
                 time.monotonic() - started, base, sbom, context)  # fmt: skip


def write_image_sbom(
    settings: Settings, spec: ImageSpec, base: Base, context: Path, digest: str
) -> Path:
    """`.tools/images/sbom/<name>.cdx.json`: what went into the image (see sbom.py)."""
    from sovereign_hub import __version__

    components = debian_components(base.packages, deb_hashes(settings.cache, base.packages))
    components += python_components(sorted(context.glob("wheels/*.whl")))
    components += python_components(sorted(context.glob("dist/*.whl")))
    if spec.npm:
        components += npm_components(json.loads((context / "package-lock.json").read_text()))
    document = make_sbom(image=f"sovereign-hub/{spec.name}", version=settings.version,
                         digest=digest, epoch=settings.epoch, components=components,
                         tool_version=__version__)  # fmt: skip
    return write_sbom(settings.cache / "images" / "sbom" / f"{spec.name}.cdx.json", document)
