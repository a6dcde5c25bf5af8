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


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    """Has ``add_arguments(parser)`` and ``run(args) -> int``."""
    summary: str
    """One line, in ``platproxy --help``."""
    description: str
    """A paragraph, in ``platproxy NAME --help``."""
    logs: bool = True
    """Its code may log: logs go to stderr at warning level, never onto the command's stdout.
    False for the quick commands, which log nothing and skip loading structlog."""


COMMANDS = (
    Command("serve", "proxy.cli.serve", "run the mirror",
            "Run the registry mirror. With no options it listens on 127.0.0.1:5000, mirrors Docker Hub and "
            "caches under the user's cache directory; options override the config file."),
    Command("hostinfo", "hostinfo.cli", "print this host's platform and what it runs",
            "Detect this host's OCI platform (os, architecture, variant, CPU features) and print the platforms "
            "it runs, best first. With --cpuinfo and --machine, detect another host from its dump.", logs=False),
    Command("resolve", "proxy.cli.resolve", "show which manifest of an index this host gets, and why",
            "Show which entry of a manifest list or image index this host (or --platform) gets, every "
            "candidate's rank and every rejected entry's reason. IMAGE asks a live registry; --index FILE "
            "works offline. Exit 0: chosen; 1: nothing fits; 2: bad input.", logs=False),
    Command("platforms", "proxy.cli.platforms", "list the platforms a live image offers, with validation warnings",
            "List every entry of a live image's index (nested ones included) with its platform and kind, "
            "and warn about platform values that are not real ones."),
    Command("prefetch", "proxy.cli.prefetch", "warm a running platproxy for this host or given platforms",
            "Pull images through a running platproxy so that later pulls are cache hits: what the server "
            "resolves for its own host, or with --platform what each of those platforms gets."),
    Command("cache", "proxy.cli.cache", "list, trim or remove cached images",
            "Inspect and trim the cache directory directly (safe beside a running server)."),
    Command("config", "proxy.cli.config", "check a configuration",
            "Validate a configuration and print the effective one, secrets masked."),
)  # fmt: skip


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="platproxy",
        description="A pull-through registry mirror that serves each host the manifest of a list that it should run.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.summary, description=command.description)
        if command.name == chosen:  # only the command being run is imported
            module = importlib.import_module(command.module)
            module.add_arguments(p)
            p.set_defaults(func=module.run, logs=command.logs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(args_list).parse_args(args_list)
    if args.logs:
        from proxy.logs import configure_logging

        configure_logging("warning")  # serve sets its own level
    code: int = args.func(args)
    return code
