"""The ``sovhub`` command: one entry point, one sub-command group per component."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .audit import cli as audit_cli
from .images import cli as images_cli
from .policy import cli as policy_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sovhub", description="Sovereign Hub administration commands."
    )
    parser.add_argument("--version", action="version", version=f"sovhub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    policy_cli.register(commands)
    audit_cli.register(commands)
    images_cli.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
