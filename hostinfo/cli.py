"""``python -m hostinfo`` / ``platproxy hostinfo``: print what this host is and what it runs.

Bad input (a missing file, an empty or binary cpuinfo, an unknown machine name) exits 2 with
one readable line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hostinfo.cpuinfo import CpuInfoError
from hostinfo.detect import HostInfoError, detect
from hostinfo.probe import capabilities, read_live, with_emulation
from hostinfo.report import host_report

DESCRIPTION = (
    "Detect this host's OCI platform (os, architecture, variant, CPU features) and print the "
    "platforms it runs, best first. With --cpuinfo and --machine, detect another host from its dump."
)


def build_parser(prog: str = "python -m hostinfo") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_capability_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ia32`` and ``--aarch32``: the 32-bit fallbacks, decided from the kernel unless given."""
    parser.add_argument("--ia32", choices=("auto", "yes", "no"), default="auto",
                        help="can this amd64 host run 386 binaries? auto: ask the kernel (default)")  # fmt: skip
    parser.add_argument(
        "--aarch32",
        choices=("auto", "yes", "no"),
        default="auto",
        help="can this arm64 host run 32-bit arm binaries? auto: ask CPU and kernel (default)",
    )
    parser.add_argument("--emulation", choices=("off", "fallback"), default="off",
                        help="fallback: rank what binfmt_misc (QEMU) handlers run after all native")  # fmt: skip
    parser.add_argument("--binfmt-dir", default="",
                        help="read handlers from this folder, not /proc/sys/fs/binfmt_misc (what-if)")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cpuinfo", type=Path, help="detect from this /proc/cpuinfo dump")
    parser.add_argument("--machine", help="uname -m of that host (required with --cpuinfo)")
    parser.add_argument("--sysname", default="Linux", help="uname -s of that host (default Linux)")
    parser.add_argument("--byteorder", choices=("little", "big"), help="byte order of that host")
    add_capability_arguments(parser)
    parser.add_argument("--format", choices=("json", "text"), default="json",
                        help="json (default): the whole report; text: the platform, then what it runs")  # fmt: skip


def read_text_file(path: Path, what: str) -> str:
    """Read a text file or raise ``HostInfoError`` with one readable line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HostInfoError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise HostInfoError(f"{what} {path} is not text (not UTF-8)") from None


def run(args: argparse.Namespace) -> int:
    try:
        if args.cpuinfo is not None or args.machine is not None:
            if args.cpuinfo is None or args.machine is None:
                raise HostInfoError("--cpuinfo and --machine go together")
            text = read_text_file(args.cpuinfo, "cpuinfo")
            found = detect(args.sysname, args.machine, text, args.byteorder or sys.byteorder)
            caps = capabilities(found.platform, args.ia32, args.aarch32, live=False)
        else:
            found = detect(*read_live())
            caps = capabilities(found.platform, args.ia32, args.aarch32, live=True)
    except (HostInfoError, CpuInfoError) as exc:
        print(f"hostinfo: {exc}", file=sys.stderr)
        return 2
    caps, handlers = with_emulation(caps, found.platform.os, args.emulation, args.binfmt_dir,
                                    live=args.cpuinfo is None)  # fmt: skip
    report = host_report(found, caps, handlers)
    if args.format == "text":
        print(report["platform"])
        for step in report["runs"]:
            print(f"{step['platform']}\t{step['label']}")
        for e in report["emulated"]:
            print(f"{e['platform']}\temulated, {'usable' if e['usable'] else 'not usable'}: {e['reason']}")
    else:
        print(json.dumps(report, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return quiet_on_broken_pipe(lambda: run(build_parser().parse_args(argv)))


SIGPIPE_EXIT = 141
"""128 + SIGPIPE: what a shell tool stopped by a closed pipe reports (``set -o pipefail`` sees it)."""


def quiet_on_broken_pipe(command: Callable[[], int]) -> int:
    """Run ``command``; when the reader of stdout leaves (``| head``), stop quietly, as cat and
    grep do, instead of a traceback."""
    try:
        code = command()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush must not fail again
        return SIGPIPE_EXIT
    return code
