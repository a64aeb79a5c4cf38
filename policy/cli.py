"""``sovhub policy``: check a policy, explain what a user would get, print the JSON Schema."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from .decide import decide, entitlements
from .decision import Identity, SpawnRequest, Usage
from .explain import explanation, render_text
from .load import LoadedPolicy, load_policy
from .problems import PolicyError

EXIT_INVALID = 1
EXIT_DENIED = 3


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _load(args: argparse.Namespace, path: str) -> LoadedPolicy | None:
    try:
        return load_policy(path)
    except PolicyError as exc:
        data = {
            "file": exc.file,
            "valid": False,
            "problems": [p.to_json(exc.file) for p in exc.problems],
        }
        _emit(args, data, str(exc))
        return None


def summary(loaded: LoadedPolicy) -> dict[str, Any]:
    p = loaded.policy
    return {
        "file": loaded.source,
        "valid": True,
        "sha256": loaded.sha256,
        "regions": len(p.regions),
        "gpuTypes": len(p.gpu_types),
        "channels": len(p.channels),
        "versions": sum(len(c.versions) for c in p.channels.values()),
        "profiles": len(p.profiles),
        "groups": len(p.groups),
    }


def cmd_check(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        loaded = _load(args, path)
        if loaded is None:
            status = EXIT_INVALID
            continue
        s = summary(loaded)
        _emit(
            args,
            s,
            f"{path}: valid: {s['regions']} regions, {s['gpuTypes']} GPU types, "
            f"{s['channels']} channels ({s['versions']} versions), {s['profiles']} profiles, "
            f"{s['groups']} groups; sha256 {s['sha256'][:12]}",
        )
    return status


def _attributes(pairs: list[str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"sovhub: --attr takes NAME=VALUE, got {pair!r}")
        out.setdefault(key, []).append(value)
    return {k: tuple(v) for k, v in out.items()}


def cmd_explain(args: argparse.Namespace) -> int:
    loaded = _load(args, args.file)
    if loaded is None:
        return EXIT_INVALID
    groups = frozenset(g.strip() for g in args.groups.split(",") if g.strip())
    identity = Identity(args.user, groups, _attributes(args.attr))
    granted = entitlements(identity, loaded.policy)
    request = decision = None
    if args.profile:
        request = SpawnRequest(
            profile=args.profile,
            region=args.region,
            version=args.version,
            now=datetime.now(UTC),
        )
        decision = decide(identity, request, loaded.policy, Usage())
    data = explanation(loaded, identity, granted, request, decision)
    _emit(args, data, render_text(data))
    return EXIT_DENIED if decision is not None and not decision.allowed else 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(resources.files(__package__).joinpath("policy.schema.json").read_text(), end="")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = commands.add_parser("policy", help="check and explain policy documents")
    sub = policy.add_subparsers(dest="policy_command", required=True)

    check = sub.add_parser(
        "check",
        help="validate policy files",
        description="Validate policy files. Exit 0 and print a summary when valid; exit 1 "
        "and print every problem (file:line:column: path: message) when not.",
    )
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--json", action="store_true", help="print JSON instead of text")
    check.set_defaults(func=cmd_check)

    explain = sub.add_parser(
        "explain",
        help="show what a user may start and what a request would get",
        description="Show the profiles and regions a user is entitled to and, with --profile, "
        "the pod plan a request would get or why it would be refused. Exit 0 when allowed "
        "(or no request), 1 when the policy is invalid, 3 when the request is denied.",
    )
    explain.add_argument("file", metavar="FILE")
    explain.add_argument("--user", required=True, help="username")
    explain.add_argument("--groups", default="", help="comma-separated identity-provider groups")
    explain.add_argument(
        "--attr",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="identity attribute, repeatable (e.g. --attr country=DE)",
    )
    explain.add_argument("--profile", help="profile to request")
    explain.add_argument("--region", help="region to request (default: the only one allowed)")
    explain.add_argument("--version", help="image version to move to")
    explain.add_argument("--json", action="store_true", help="print JSON instead of text")
    explain.set_defaults(func=cmd_explain)

    schema = sub.add_parser("schema", help="print the policy JSON Schema (for editors)")
    schema.set_defaults(func=cmd_schema)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - convenience
    from sovereign_hub.cli import main as root

    return root(["policy", *(argv if argv is not None else sys.argv[1:])])
