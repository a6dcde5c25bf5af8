"""The command line's shape: plain-text help for every command and option, and the quick
commands loading no server code (the start time itself is measured in bench/startup.py)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli.main import COMMANDS, build_parser
from tests import indexes

SERVER_MODULES = ("aiohttp.web", "prometheus_client", "bcrypt", "tqdm", "structlog", "proxy.http", "proxy.storage",
                  "proxy.pull", "aiobotocore")  # fmt: skip


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser([name])
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub: argparse.ArgumentParser = action.choices[name]
    return sub


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action.choices.values():
                assert choice.description, f"{choice.prog} has no description"
                found += _options(choice)
        elif not isinstance(action, argparse._HelpAction):
            found.append(action)
    return found


def test_top_level_help_lists_every_command_in_plain_text() -> None:
    text = build_parser(["--help"]).format_help()
    for command in COMMANDS:
        assert command.name in text and command.summary in text
    assert "``" not in text


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_every_command_and_option_has_a_description(command: str) -> None:
    parser = _subparser(command)
    assert parser.description and "``" not in parser.format_help()
    missing = [a.dest for a in _options(parser) if not a.help]
    assert not missing, f"platproxy {command}: options without help: {missing}"


@pytest.mark.parametrize("args", [["hostinfo", "--format", "text"], ["resolve", "--index", "{index}"], ["--help"]])
def test_quick_commands_load_no_server_module(args: list[str], tmp_path: Path) -> None:
    index = tmp_path / "index.json"
    index.write_bytes(indexes.alpine_with_attestations().top.data)
    argv = [a.replace("{index}", str(index)) for a in args]
    code = (
        "import sys\n"
        "from proxy.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({SERVER_MODULES!r}))\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
