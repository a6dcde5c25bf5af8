"""``platproxy config check [FILE]``: validate a config and print the effective one, secrets masked."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from proxy.cli.common import fail, file_problem, origin_lines, subcommand
from proxy.config import ConfigError, load_config, masked
from proxy.pull.policy import describe as describe_policy

DESCRIPTION = "Validate a configuration and print the effective one, secrets masked."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="config_command", required=True)
    check = subcommand(sub, "check", "validate FILE (and PLATPROXY_* variables); print the effective config")
    check.add_argument("file", nargs="?", type=Path, help="TOML config file (default: embedded defaults only)")
    check.add_argument("--config", type=Path, dest="config_file", help="the same, as serve spells it")
    check.set_defaults(action=run_check)


def run_check(args: argparse.Namespace) -> int:
    if args.file and args.config_file and args.file != args.config_file:
        return fail("config", "give the file once (FILE or --config)")
    origins: dict[str, str] = {}
    try:
        config = load_config(args.file or args.config_file, origins=origins)
    except ConfigError as exc:
        return fail("config", str(exc))
    problem = file_problem(config)  # the files the config names, checked as serve checks them
    if problem:
        return fail("config", problem)
    print(json.dumps(masked(config), indent=2))
    for line in [*origin_lines(origins), *describe_policy(config.policy)]:
        print(f"platproxy config: {line}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    code: int = args.action(args)
    return code
