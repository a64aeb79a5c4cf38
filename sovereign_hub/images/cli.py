"""``sovhub images pin``: resolve a tag to its digest and pin it in Dockerfiles and the policy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sovereign_hub.policy import PolicyError

from . import build_cli
from .pin import PinError, diff, pin_dockerfile, pin_policy
from .reference import ImageReferenceError, Reference
from .registry import Registry, RegistryError


def cmd_pin(args: argparse.Namespace) -> int:
    try:
        ref = Reference.parse(args.image)
        resolved = Registry(plain_http=args.plain_http).resolve(ref)
    except (ImageReferenceError, RegistryError) as exc:
        print(f"sovhub images pin: {exc}", file=sys.stderr)
        return 1
    kind = "multi-arch index" if resolved.multi_arch else "manifest"
    platforms = f" ({', '.join(resolved.platforms)})" if resolved.platforms else ""
    print(f"{ref.name}:{ref.tag or ref.digest} -> {resolved.digest} [{kind}{platforms}]")
    changes: list[tuple[Path, str, str]] = []
    try:
        for dockerfile in args.dockerfile:
            path = Path(dockerfile)
            before = path.read_text()
            after = pin_dockerfile(before, ref, resolved.digest)
            if after == before:
                print(f"sovhub images pin: {path}: no FROM of {ref.name}", file=sys.stderr)
                return 1
            changes.append((path, before, after))
        if args.policy:
            if not (args.channel and args.version):
                print("sovhub images pin: --policy needs --channel and --version", file=sys.stderr)
                return 2
            path = Path(args.policy)
            before = path.read_text()
            after = pin_policy(
                before, str(path), args.channel, args.version, ref.pinned(resolved.digest)
            )
            changes.append((path, before, after))
    except (OSError, PinError, PolicyError) as exc:
        print(f"sovhub images pin: {exc}", file=sys.stderr)
        return 1
    for path, before, after in changes:
        sys.stdout.write(diff(path, before, after))
        if args.write:
            path.write_text(after)
    if changes and not args.write:
        print("(not written: add --write to apply)")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    images = commands.add_parser("images", help="build, release, resolve and pin images")
    sub = images.add_subparsers(dest="images_command", required=True)
    build_cli.register(sub)
    pin = sub.add_parser(
        "pin",
        help="resolve IMAGE's tag to its digest and pin it",
        description="Resolve IMAGE (repo:tag) to its digest through the OCI distribution API "
        "(a multi-arch tag resolves to its index digest), then pin it in Dockerfiles' FROM "
        "lines and as a version of a policy channel, showing the diff. Nothing is written "
        "without --write.",
    )
    pin.add_argument("image", metavar="IMAGE", help="e.g. quay.io/jupyter/base-notebook:2026-11-02")
    pin.add_argument("--dockerfile", action="append", default=[], help="Dockerfile to update")
    pin.add_argument("--policy", help="policy file whose channel gets the digest")
    pin.add_argument("--channel", help="the policy channel")
    pin.add_argument("--version", help="the channel version to add or update")
    pin.add_argument("--write", action="store_true", help="apply the changes shown")
    pin.add_argument(
        "--plain-http", action="store_true", help="talk HTTP, not HTTPS (a local registry)"
    )
    pin.set_defaults(func=cmd_pin)
