"""``platproxy config check [FILE]``: validate a config and print the effective one, secrets masked."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import tomli_w

from proxy.cli.common import fail, file_problem, origin_lines, subcommand
from proxy.config import Config, ConfigError, file_key, load_config, masked
from proxy.loops import LoopMissing, chosen_loop
from proxy.pull.policy import describe as describe_policy
from proxy.sizes import human

DESCRIPTION = "Validate a configuration and print the effective one, secrets masked."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="config_command", required=True)
    check = subcommand(sub, "check", "validate FILE (and PLATPROXY_* variables); print the effective config")
    check.add_argument("file", nargs="?", type=Path, help="TOML config file (default: embedded defaults only)")
    check.add_argument("--config", type=Path, dest="config_file", help="the same, as serve spells it")
    check.add_argument("--json", action="store_true", help="print the effective config as JSON (the model's names: "
                       "upstreams for [[upstream]]) instead of TOML")  # fmt: skip
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
    try:
        loop_name, _, fallback = chosen_loop(config.loop)
    except LoopMissing as exc:
        return fail("config", f"config key {file_key('loop')}: {exc}")
    shown = masked(config)
    print(json.dumps(shown, indent=2) if args.json else as_toml(shown), end="" if not args.json else "\n")
    loop_line = f"event loop: {loop_name}" + (f" ({fallback})" if fallback else "")
    for line in [*origin_lines(origins), *describe_policy(config.policy), limits_line(config), loop_line]:
        print(f"platproxy config: {line}", file=sys.stderr)
    return 0


def as_toml(shown: dict[str, Any]) -> str:
    """The effective config as the file a user would write: ``[[upstream]]`` tables, settings
    before sections (tomli-w orders them so), nothing for what is unset (TOML has no null)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    data = plain(shown)
    data["upstream"] = data.pop("upstreams")
    header = "# platproxy's effective configuration (platproxy config check), secrets masked as ***\n"
    return header + tomli_w.dumps(data)


def limits_line(config: Config) -> str:
    """What any client meets before it is authenticated, and what a fill may take (docs/security.md)."""
    lim = config.limits
    return (f"limits before authentication: lines of {lim.max_header_line} bytes, {lim.max_headers} headers, "
            f"{lim.max_partial_per_client} unfinished requests per address, headers within {lim.header_timeout:g}s; "
            f"a blob fill at most its manifest's size (else {human(lim.max_blob_size)}) and at least "
            f"{human(lim.min_fill_rate)}/s over {lim.read_timeout:g}s")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    code: int = args.action(args)
    return code
