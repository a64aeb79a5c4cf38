"""The images' base root file systems, built from Debian packages with mmdebstrap.

A base is named by a package list (`images/base/<name>.txt`) and the apt sources it is
built from (`images/base/sources.list`). mmdebstrap installs the list on Debian's `minbase`
variant with no documentation but the copyright files, and records the resolved package set
(name, version, architecture) beside the list (`images/base/<name>.packages`). The next time
the mirror has moved on, the rebuild says which packages changed, and the recorded set is the
review's diff. Downloaded .deb files are kept in a cache directory (`.tools/debs/`), so a
rebuild downloads only what changed, and the base itself is cached by a key over everything
that defines it, so the image builds that follow reuse it.

mmdebstrap was chosen over debootstrap because it builds as a plain tarball, with
SOURCE_DATE_EPOCH honoured (its output is bit-for-bit reproducible for a given package set),
in under a minute here, and with hooks to keep the apt cache outside the root file system.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .oci import write_rootfs_image

BASE_DIR = Path("images") / "base"
BASE_TAG = "bookworm"
SUITE = "bookworm"
# Paths dpkg never unpacks into a base: documentation (the copyright files excepted, which
# the licences require), manual pages and translations.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
# Changed whenever mmdebstrap_command changes, so cached bases are rebuilt.
RECIPE = "recipe 2: documentation dropped after install"
PACKAGE_FORMAT = r"${Package}\t${Version}\t${Architecture}\n"


class BaseError(RuntimeError):
    """A base that cannot be built; the message names the file or the failing step."""


@dataclass(frozen=True, slots=True)
class BaseSpec:
    name: str
    packages: tuple[str, ...]
    sources: tuple[str, ...]

    @property
    def image(self) -> str:
        """The name buildah's local storage knows the base by (the Dockerfiles' BASE)."""
        return f"localhost/sovereign-hub/base-{self.name}:{BASE_TAG}"

    def key(self, epoch: int) -> str:
        text = "\n".join([RECIPE, self.name, *self.packages, *self.sources, str(epoch),
                          *DPKG_OPTIONS])  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Base:
    spec: BaseSpec
    directory: Path
    layout: Path
    packages: dict[str, tuple[str, str]]
    changes: tuple[str, ...]
    built: bool


def _lines(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise BaseError(f"{path}: cannot read ({exc.strerror})") from None
    return tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def load_spec(root: Path, name: str) -> BaseSpec:
    listing = root / BASE_DIR / f"{name}.txt"
    if not listing.exists():
        known = sorted(p.stem for p in (root / BASE_DIR).glob("*.txt"))
        raise BaseError(f"{listing}: no such base (bases: {', '.join(known)})")
    packages = _lines(listing)
    for package in packages:
        if not all(c.isalnum() or c in "+-." for c in package):
            raise BaseError(f"{listing}: {package!r} is not a Debian package name")
    return BaseSpec(name, packages, _lines(root / BASE_DIR / "sources.list"))


def parse_packages(text: str) -> dict[str, tuple[str, str]]:
    """``name -> (version, architecture)`` from `dpkg-query` lines `name\\tversion\\tarch`."""
    packages = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            name, version, arch = line.split("\t")
            packages[name] = (version, arch)
    return packages


def format_packages(packages: dict[str, tuple[str, str]]) -> str:
    return "".join(f"{n}\t{v}\t{a}\n" for n, (v, a) in sorted(packages.items()))


def compare(old: dict[str, tuple[str, str]], new: dict[str, tuple[str, str]]) -> list[str]:
    """What moved between two package sets, one line each, sorted by package."""
    out = []
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            out.append(f"removed {name} {old[name][0]}")
        elif name not in old:
            out.append(f"added {name} {new[name][0]}")
        elif old[name] != new[name]:
            out.append(f"changed {name} {old[name][0]} -> {new[name][0]}")
    return out


def mmdebstrap_command(spec: BaseSpec, target: Path, debs: Path, listing: Path) -> list[str]:
    command = ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(spec.packages),
               "--aptopt=Acquire::Languages \"none\"",
               # Keep the .deb files in `debs`, outside the root file system (mmdebstrap's
               # documented recipe for a download cache).
               "--skip=download/empty", "--skip=essential/unlink",
               "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
               f"--setup-hook=sync-in {debs} /var/cache/apt/archives/",
               f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
               f"--customize-hook=dpkg-query --admindir=\"$1\"/var/lib/dpkg -W "
               f"-f='{PACKAGE_FORMAT}' > {listing}",
               # The cache was synced out above; the image keeps none of it.
               "--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb",
               # The essential packages are unpacked before dpkg reads DPKG_OPTIONS: drop
               # the documentation they brought, the copyright files excepted.
               "--customize-hook=find \"$1\"/usr/share/doc -type f ! -name copyright "
               "-delete"]  # fmt: skip
    command += [f"--dpkgopt={option}" for option in DPKG_OPTIONS]
    return [*command, SUITE, str(target), *spec.sources]


def build_base(root: Path, name: str, *, cache: Path, epoch: int, log: Path | None = None) -> Base:
    """The base ``name``: from the cache when its key matches, else built with mmdebstrap,
    its package set compared with (and then written to) `images/base/<name>.packages`."""
    spec = load_spec(root, name)
    directory = cache / "images" / f"base-{name}"
    layout = directory / "layout"
    recorded_path = root / BASE_DIR / f"{name}.packages"
    recorded = parse_packages(recorded_path.read_text()) if recorded_path.exists() else {}
    key = spec.key(epoch)
    key_file = directory / "key"
    listing = directory / "packages.tsv"
    if key_file.exists() and key_file.read_text() == key and listing.exists():
        current = parse_packages(listing.read_text())
        changes = tuple(compare(recorded, current)) if recorded else ()
        return Base(spec, directory, layout, current, changes, False)
    debs = cache / "debs" / SUITE
    debs.mkdir(parents=True, exist_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    tarball = directory / "rootfs.tar"
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "LC_ALL": "C.UTF-8"}
    with open(log or os.devnull, "ab") as out:
        done = subprocess.run(
            mmdebstrap_command(spec, tarball, debs, listing), env=env, stdout=out, stderr=out
        )
    if done.returncode != 0:
        raise BaseError(f"mmdebstrap failed for base {name!r} (exit {done.returncode}); see {log}")
    current = parse_packages(listing.read_text())
    write_rootfs_image(
        layout, tarball, tag=BASE_TAG, created=epoch,
        labels={"org.opencontainers.image.title": f"sovereign-hub-base-{name}",
                "org.opencontainers.image.description": f"Debian {SUITE} minbase with: "
                + " ".join(spec.packages)},
    )  # fmt: skip
    tarball.unlink()
    recorded_path.write_text(
        f"# The Debian packages of the {name} base, as last built (name, version, arch).\n"
        + format_packages(current)
    )
    key_file.write_text(key)
    # With no earlier record there is nothing to compare: every package would read as added.
    changes = tuple(compare(recorded, current)) if recorded else ()
    return Base(spec, directory, layout, current, changes, True)


def deb_hashes(cache: Path, packages: dict[str, tuple[str, str]]) -> dict[str, str]:
    """SHA-256 of each package's .deb in the download cache (name -> hex), where present."""
    debs = cache / "debs" / SUITE
    out = {}
    for name, (version, arch) in packages.items():
        # apt names cached files name_version_arch.deb with ':' in the version as '%3a'.
        path = debs / f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
        if path.exists():
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
