"""``sovhub images build|context|release``: build the images here, release them by digest."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from sovereign_hub.policy import PolicyError

from .build import (
    DEFAULT_IMAGES,
    IMAGES,
    BuildError,
    Settings,
    base_epoch,
    build_image,
    load_index,
    prepare_context,
    save_index,
)
from .bundle import BundleError, package_chart, push_chart, write_bundle
from .debian import BaseError, build_base
from .pin import PinError
from .release import Pusher, ReleaseError, digest_manifest, notebook_channels, release

INDEX = Path(".tools") / "images" / "images.json"


def _root() -> Path:
    return Path.cwd()


def cmd_build(args: argparse.Namespace) -> int:
    settings = Settings.for_checkout(_root(), args.version)
    built = []
    for name in args.images or DEFAULT_IMAGES:
        try:
            result = build_image(settings, name, progress=lambda line: print(line, flush=True))
        except (BuildError, BaseError) as exc:
            print(f"sovhub images build: {exc}", file=sys.stderr)
            return 1
        built.append(result.artifact)
        print(f"{name}: {result.digest} {result.size / 1e6:.1f} MB compressed, "
              f"{result.seconds:.0f} s (base {'built' if result.base.built else 'cached'}), "
              f"layout {result.layout}:{result.tag}, SBOM {result.sbom}", flush=True)  # fmt: skip
    save_index(_root() / INDEX, built)
    return 0


def cmd_context(args: argparse.Namespace) -> int:
    settings = Settings.for_checkout(_root(), None)
    if args.image not in IMAGES:
        print(f"sovhub images context: no image {args.image!r} (images: {', '.join(IMAGES)})",
              file=sys.stderr)  # fmt: skip
        return 1
    spec = IMAGES[args.image]
    try:
        base = build_base(settings.root, spec.base, cache=settings.cache,
                          epoch=base_epoch(settings.root), log=settings.log)  # fmt: skip
        context = prepare_context(settings, spec, Path(args.directory), base)
    except (BuildError, BaseError) as exc:
        print(f"sovhub images context: {exc}", file=sys.stderr)
        return 1
    print(f"build context for {args.image} in {context}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    try:
        index = load_index(_root() / INDEX)
        wanted = args.images or sorted(index)
        missing = [name for name in wanted if name not in index]
        if missing:
            print(f"sovhub images release: not built: {', '.join(missing)} (run `make images`)",
                  file=sys.stderr)  # fmt: skip
            return 1
        pusher = Pusher(args.registry, args.prefix, plain_http=args.plain_http)
        released = release(
            [index[name] for name in wanted], pusher, values=Path(args.values),
            policies=[Path(p) for p in args.policy],
            channels=notebook_channels(args.channel, args.gpu_channel),
            version=args.channel_version or index[wanted[0]].tag,
        )  # fmt: skip
    except (BuildError, ReleaseError, PinError, PolicyError, OSError) as exc:
        print(f"sovhub images release: {exc}", file=sys.stderr)
        return 1
    print(digest_manifest(released))
    if args.chart:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                helm = _helm(args.helm)
                packaged = package_chart(helm, _root() / "helm" / "sovereign-hub", Path(tmp))
                chart = push_chart(helm, packaged, args.registry, plain_http=args.plain_http)
            except BundleError as exc:
                print(f"sovhub images release: {exc}", file=sys.stderr)
                return 1
        print(f"chart: {chart}")
    return 0


def _helm(given: str | None) -> Path:
    import shutil

    for candidate in (given, _root() / ".tools" / "helm-4.1" / "helm", shutil.which("helm")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise BundleError("no helm binary: pass --helm or run `make helm`")


def cmd_bundle(args: argparse.Namespace) -> int:
    try:
        index = load_index(_root() / INDEX)
        settings = Settings.for_checkout(_root(), None)
        manifest = write_bundle(
            [index[name] for name in sorted(index)], chart=_root() / "helm" / "sovereign-hub",
            helm=_helm(args.helm), out=Path(args.out), epoch=settings.epoch,
        )  # fmt: skip
    except (BuildError, BundleError, OSError) as exc:
        print(f"sovhub images bundle: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(manifest, indent=1, sort_keys=True))
    print(f"wrote {args.out}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    build = sub.add_parser(
        "build",
        help="build images from Debian packages and hashed wheels (mmdebstrap, buildah)",
        description="Build each image (default: all) reproducibly into an OCI layout under "
        ".tools/images/oci/, with its CycloneDX SBOM under .tools/images/sbom/, and record "
        "the digests in .tools/images/images.json. Run from the repository root.",
    )
    build.add_argument(
        "images", nargs="*", metavar="IMAGE",
        help=f"of {', '.join(IMAGES)}; none given: {', '.join(DEFAULT_IMAGES)} "
        "(the others, e.g. the 4+ GB notebook-gpu, only when named)",
    )  # fmt: skip
    build.add_argument("--version", help="the version label and tag (default: the package's)")
    build.set_defaults(func=cmd_build)
    context = sub.add_parser(
        "context",
        help="write an image's build context (for docker/podman build elsewhere)",
        description="Write IMAGE's build context (lock, hashed wheels, our wheel or the npm "
        "modules) into DIRECTORY, for `docker build -f images/IMAGE/Dockerfile DIRECTORY`.",
    )
    context.add_argument("image", metavar="IMAGE")
    context.add_argument("directory", metavar="DIRECTORY")
    context.set_defaults(func=cmd_context)
    rel = sub.add_parser(
        "release",
        help="push the built images by digest with their SBOMs; pin them in chart and policy",
        description="Push the images `sovhub images build` recorded to REGISTRY (skopeo, "
        "digests preserved and checked), push each SBOM beside its image as an OCI artifact "
        "(tag sha256-<digest>.sbom), then write the digests into the chart's values (hub, "
        "proxy, and each notebook image as a version of its policy channel, which the "
        "pre-puller follows) and into each --policy file. Nothing is written if a push fails.",
    )
    rel.add_argument("images", nargs="*", metavar="IMAGE", help="default: every built image")
    rel.add_argument("--registry", required=True, help="host[:port] of the registry")
    rel.add_argument("--prefix", default="sovereign-hub", help="repository prefix")
    rel.add_argument("--plain-http", action="store_true", help="HTTP, not HTTPS (local registry)")
    rel.add_argument("--values", default="helm/sovereign-hub/values.yaml")
    rel.add_argument("--policy", action="append", default=[], help="policy file to update")
    rel.add_argument("--channel", default="datascience", help="notebook-cpu's channel")
    rel.add_argument(
        "--gpu-channel", default="pytorch", help="notebook-gpu's channel (when it was built)"
    )
    rel.add_argument("--channel-version", help="the channel version (default: the image tag)")
    rel.add_argument(
        "--chart",
        action="store_true",
        help="then package the chart (with the new digests) and helm push it to "
        "oci://REGISTRY/charts",
    )
    rel.add_argument("--helm", help="the helm binary (default: .tools/helm-4.1/helm, then PATH)")
    rel.set_defaults(func=cmd_release)
    bundle = sub.add_parser(
        "bundle",
        help="write the air-gap bundle: chart, image layouts, SBOMs, digest manifest",
        description="Write one tar archive with the packaged chart, every built image as an "
        "OCI layout, their SBOMs and manifest.json (every digest), to load into an internal "
        "registry with skopeo/oras and helm (docs/howto/images.md).",
    )
    bundle.add_argument("--out", default="sovereign-hub-bundle.tar", help="the archive to write")
    bundle.add_argument("--helm", help="the helm binary (default: .tools/helm-4.1/helm, then PATH)")
    bundle.set_defaults(func=cmd_bundle)
