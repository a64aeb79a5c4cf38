"""``sovhub migrate z2jh``: Zero to JupyterHub values → this chart's values and a draft policy.

A thin command around :func:`sovereign_hub.z2jh.convert`: it reads the file,
gathers what only the admin knows (digests, the region's node label values,
a storage class), writes ``values.yaml``, ``policy.yaml`` and ``report.txt``,
and checks the policy with the same loader as ``sovhub policy check``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from .policy import PolicyError, parse_policy
from .z2jh import Inputs, Migration, convert, is_marker

EXIT_FILL_IN = 1
"""The draft is written but the admin must complete it (``report.txt`` says what)."""
EXIT_UNREADABLE = 2


class _Block(str):
    """Text written as a YAML literal block (``|``)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Block, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")
)


def report(migration: Migration, source: str) -> str:
    """The report for the admin: what was not carried over, what changed, what to fill in."""
    lines = [f"Migration of {source} (Zero to JupyterHub) to Sovereign Hub", ""]
    for title, notes in (
        ("Not carried over", migration.not_carried),
        ("Carried over with a difference", migration.changed),
    ):
        lines.append(f"{title} ({len(notes)}):")
        lines += [f"  {n.path}: {n.reason}" for n in notes] or ["  (none)"]
        lines.append("")
    lines.append(f"To fill in before `sovhub policy check` passes ({len(migration.fill_in)}):")
    lines += [f"  {f.path}: {f.what}" for f in migration.fill_in] or ["  (none)"]
    return "\n".join(lines) + "\n"


def _digests(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        image, sep, digest = pair.rpartition("=")
        if not sep or not image or not digest.startswith("sha256:"):
            raise SystemExit(f"sovhub migrate: --digest takes IMAGE=sha256:<hex>, got {pair!r}")
        out[image] = digest
    return out


def _resolve(migration: Migration, known: dict[str, str], plain_http: bool) -> dict[str, str]:
    """Digests from the registry for every image the draft still names by tag."""
    from .images.reference import ImageReferenceError, Reference
    from .images.registry import Registry, RegistryError

    registry = Registry(plain_http=plain_http)
    found = dict(known)
    for channel in migration.policy["channels"].values():
        image = channel["versions"][0]["image"]
        if "@" in image or is_marker(image) or image in found:
            continue
        try:
            found[image] = registry.resolve(Reference.parse(image)).digest
        except (ImageReferenceError, RegistryError) as exc:
            print(f"sovhub migrate: {image}: {exc}", file=sys.stderr)
        else:
            print(f"{image} -> {found[image]}")
    return found


def cmd_z2jh(args: argparse.Namespace) -> int:
    try:
        values = yaml.safe_load(Path(args.values).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        print(f"sovhub migrate: {args.values}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if not isinstance(values, dict):
        print(f"sovhub migrate: {args.values}: not a values file (a mapping)", file=sys.stderr)
        return EXIT_UNREADABLE
    inputs = Inputs(
        released=datetime.now(UTC).date(),
        digests=_digests(args.digest),
        region=args.region,
        node_regions=tuple(args.node_region),
        storage_class=args.storage_class,
        gpu_quota=args.gpu_quota,
    )
    migration = convert(values, inputs)
    if args.resolve:
        digests = _resolve(migration, dict(inputs.digests), args.plain_http)
        inputs = dataclasses.replace(inputs, digests=digests)
        migration = convert(values, inputs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    policy_text = yaml.safe_dump(migration.policy, sort_keys=False, allow_unicode=True)
    # The policy goes into the values as text: as a mapping, Helm would sort its profiles
    # (z2jh's order, default first, is the spawn form's order).
    values = {**migration.values, "policy": _Block(policy_text)}
    written = {
        "values.yaml": yaml.dump(values, Dumper=_Dumper, sort_keys=False, allow_unicode=True),
        "policy.yaml": policy_text,
        "report.txt": report(migration, args.values),
    }
    existing = [name for name in written if (out / name).exists()]
    if existing and not args.force:
        print(
            f"sovhub migrate: {out}: would overwrite {', '.join(existing)}; add --force",
            file=sys.stderr,
        )
        return EXIT_UNREADABLE
    for name, text in written.items():
        (out / name).write_text(text)
    sys.stdout.write(written["report.txt"])
    problems = ""
    try:
        parse_policy(written["policy.yaml"], str(out / "policy.yaml"))
    except PolicyError as exc:
        problems = str(exc)
    if migration.fill_in or problems:
        print(
            f"\n{out} holds a draft: fill in the {len(migration.fill_in)} place(s) above in "
            f"{out}/values.yaml and {out}/policy.yaml (the same policy), then run `sovhub "
            "policy check` on policy.yaml; or rerun this command with the missing options."
        )
        if problems:
            print(f"\nsovhub policy check says:\n{problems}")
        return EXIT_FILL_IN
    print(
        f"\nWrote {out}/values.yaml (the policy is under `policy:`) and {out}/policy.yaml, "
        "which passes `sovhub policy check`."
    )
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "migrate",
        help="convert Zero to JupyterHub values to this chart's",
    )
    sub = group.add_subparsers(dest="source", required=True)
    z2jh = sub.add_parser(
        "z2jh",
        help="from a Zero to JupyterHub values file",
        description="Write this chart's values, a draft policy and a report of what could not "
        "be carried over. Images are pinned by digest only from --digest or --resolve; "
        "nothing is guessed, so what is missing is listed to fill in (exit status 1).",
    )
    z2jh.add_argument("values", metavar="VALUES", help="the Zero to JupyterHub values file")
    z2jh.add_argument(
        "--out", default="sovereign-hub", help="directory to write to (default: %(default)s)"
    )
    z2jh.add_argument("--force", action="store_true", help="overwrite files in --out")
    z2jh.add_argument(
        "--digest",
        action="append",
        default=[],
        metavar="IMAGE=sha256:…",
        help="the digest of an image as the values name it (repeat for each image)",
    )
    z2jh.add_argument(
        "--resolve",
        action="store_true",
        help="look up the digest of each image still named by tag in its registry",
    )
    z2jh.add_argument(
        "--plain-http", action="store_true", help="with --resolve: talk HTTP (a local registry)"
    )
    z2jh.add_argument(
        "--region", default="default", help="name of the policy's region (default: %(default)s)"
    )
    z2jh.add_argument(
        "--node-region",
        action="append",
        default=[],
        metavar="VALUE",
        help="a topology.kubernetes.io/region value of that region's nodes (repeatable)",
    )
    z2jh.add_argument(
        "--storage-class",
        help="storage class of home volumes, when the values name none (z2jh's default class)",
    )
    z2jh.add_argument(
        "--gpu-quota",
        type=int,
        metavar="N",
        help="GPUs each allowed group may hold at once, when a profile has GPUs",
    )
    z2jh.set_defaults(func=cmd_z2jh)
