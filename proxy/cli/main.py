"""The ``platproxy`` command: a table of subcommands, each in its own module, loaded lazily.

Only the module of the subcommand being run is imported, so ``platproxy hostinfo`` and
``platproxy resolve`` never load the server (aiohttp.web, prometheus, the stores).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from hostinfo.cli import quiet_on_broken_pipe


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    """Has ``DESCRIPTION`` (a paragraph, in ``platproxy NAME --help``), ``add_arguments(parser)``
    and ``run(args) -> int``."""
    summary: str
    """One line, in ``platproxy --help``."""
    logs: bool = True
    """Its code may log: logs go to stderr at warning level, never onto the command's stdout.
    False for the quick commands, which log nothing and skip loading structlog."""


COMMANDS = (
    Command("serve", "proxy.cli.serve", "run the mirror"),
    Command("hostinfo", "hostinfo.cli", "print this host's platform and what it runs", logs=False),
    Command("resolve", "proxy.cli.resolve", "show which manifest of an index this host gets, and why", logs=False),
    Command("platforms", "proxy.cli.platforms", "list the platforms a live image offers, with validation warnings"),
    Command("prefetch", "proxy.cli.prefetch", "warm a running platproxy for this host or given platforms"),
    Command("cache", "proxy.cli.cache", "list, trim or remove cached images"),
    Command("config", "proxy.cli.config", "check a configuration"),
    Command("node", "proxy.cli.node", "point this node's runtimes at the mirror (setup, check, undo)"),
    Command("report", "proxy.cli.report", "what every node pulled, what it got, what would run"),
    Command("bundle", "proxy.cli.bundle", "images for air-gapped sites, trimmed (export, import)"),
)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="platproxy",
        description="A pull-through registry mirror that serves each host the manifest of a list that it should run.",
    )
    parser.add_argument("--version", action="version", version=f"platproxy {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.summary)
        if command.name == chosen:  # only the command being run is imported
            module = importlib.import_module(command.module)
            p.description = module.DESCRIPTION
            module.add_arguments(p)
            p.set_defaults(func=module.run, logs=command.logs)
    return parser


def version() -> str:
    """The installed distribution's version (a source tree that was never installed: ``unknown``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("platproxy")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(args_list).parse_args(args_list)
    if args.logs:
        from proxy.logs import configure_logging

        configure_logging("warning")  # serve sets its own level
    code: int = quiet_on_broken_pipe(lambda: args.func(args))
    return code
