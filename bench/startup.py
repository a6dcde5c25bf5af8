"""How long the quick commands take to start and finish: ``platproxy hostinfo`` and
``platproxy resolve --index``, medians of repeated runs (the issue's bound: under 0.1 s).

    .venv/bin/python bench/startup.py [--runs 15]

Each run is a new process, as a user or a script calls it; the index is a real one built by the
tests' image builder (alpine's eight platforms with attestations).  ``--help`` is measured too:
it must load no subcommand at all.  Bytecode is allowed (``PYTHONDONTWRITEBYTECODE`` is dropped
for these runs): an installed platproxy has its .pyc files, and compiling every module again at
each start would measure the environment, not the command.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import indexes  # noqa: E402

COMMANDS = {
    "start: platproxy --help (s)": ["--help"],
    "start: platproxy hostinfo (s)": ["hostinfo"],
    "start: platproxy resolve --index (s)": ["resolve", "--index", "{index}", "--platform", "linux/arm/v7"],
}


def measure(runs: int) -> dict[str, list[float]]:
    platproxy = Path(sys.executable).with_name("platproxy")
    base = [str(platproxy)] if platproxy.exists() else [sys.executable, "-m", "proxy.cli"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index.json"
        index.write_bytes(indexes.alpine_with_attestations().top.data)
        out: dict[str, list[float]] = {}
        for name, args in COMMANDS.items():
            argv = base + [a.replace("{index}", str(index)) for a in args]
            subprocess.run(argv, capture_output=True, check=True, env=env)  # warm the page cache and .pyc files
            for _ in range(runs):
                started = time.perf_counter()
                subprocess.run(argv, capture_output=True, check=True, env=env)
                out.setdefault(name, []).append(time.perf_counter() - started)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    for name, values in measure(args.runs).items():
        print(f"{name}: median {statistics.median(values):.3f}, min {min(values):.3f}, max {max(values):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
