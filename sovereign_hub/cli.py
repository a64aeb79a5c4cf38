"""The ``sovhub`` command: one entry point, one sub-command group per component.

Only the group being run is imported. ``sovhub policy check`` therefore loads
the policy code and nothing else: it works on a plain ``pip install
sovereign-hub`` (the audit group needs the ``hub`` extra) and starts fast,
since the audit group's imports (jupyter_events, prometheus_client) are most
of the cost of importing everything.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection
from typing import Any, NamedTuple


class Command(NamedTuple):
    module: str
    """Module whose ``register(commands)`` adds the group's parser."""
    help: str
    """The group's one-line help, shown by ``sovhub --help`` without importing the module."""
    extra: str | None = None
    """The distribution's extra the group needs beyond a plain install, if any."""


COMMANDS: dict[str, Command] = {
    "policy": Command("sovereign_hub.policy.cli", "check and explain policy documents"),
    "audit": Command(
        "sovereign_hub.audit.cli", "verify, query and export the audit trail", extra="hub"
    ),
    "images": Command("sovereign_hub.images.cli", "build, release, resolve and pin images"),
    "hub-db": Command("sovereign_hub.hubdb", "back up and restore the hub's database"),
    "migrate": Command(
        "sovereign_hub.migrate",
        "convert Zero to JupyterHub values to this chart's",
        extra="migrate",
    ),
    "gpu-queue": Command(
        "sovereign_hub.spawner.queuecli",
        "list the GPU queue per GPU type and region",
        extra="hub",
    ),
}


class _PrintVersion(argparse.Action):
    """argparse's ``version`` action, reading the version only when asked for it."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from . import __version__

        print(f"sovhub {__version__}")
        parser.exit()


def build_parser(groups: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The ``sovhub`` parser with every group, or only ``groups`` in full.

    The other groups are placeholders that list them in ``--help`` without importing them.
    """
    parser = argparse.ArgumentParser(
        prog="sovhub", description="Sovereign Hub administration commands."
    )
    parser.add_argument(
        "--version", action=_PrintVersion, nargs=0, help="show the version and exit"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        if groups is None or name in groups:
            _load(name, command).register(commands)
        else:
            commands.add_parser(name, help=command.help)
    return parser


def _load(name: str, command: Command) -> Any:
    try:
        return importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        if command.extra is None or (exc.name or "").startswith("sovereign_hub"):
            raise
        raise SystemExit(
            f"sovhub {name}: needs the '{command.extra}' extra ({exc.name} is not installed): "
            f"pip install 'sovereign-hub[{command.extra}]'"
        ) from None


def _command_named(argv: list[str]) -> str | None:
    # The root parser's own options (--help, --version) take no value, so the
    # first word that is not an option is the group.
    word = next((arg for arg in argv if not arg.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    group = _command_named(argv)
    # No known group (`sovhub --help`, a typo): placeholders are enough to list
    # the groups or name the unknown one.
    args = build_parser([group] if group else []).parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
