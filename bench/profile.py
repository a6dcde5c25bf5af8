"""Where a cold fill's time goes: py-spy samples of platproxy while one client pulls a cold blob.

    .venv/bin/pip install py-spy && .venv/bin/python bench/profile.py [--mib 256] [--runs 3]

Starts a real upstream (Debian's docker-registry) with one large blob, then for each run a fresh
platproxy (empty cache): page cache dropped (root), the upstream's copy read once (so it serves
from memory), py-spy attached, one curl of the blob.  Prints the share of busy samples by thread
and by function (self time), idle waits (epoll, blocked reads, queue waits) left out.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cold import start_cold  # noqa: E402
from bench.servers import PlatproxyServer, curl_many, large_case  # noqa: E402
from tests.registry import Registry, push_case  # noqa: E402

IDLE = ("select (selectors", "poll (selectors", "_worker (concurrent", "wait (threading", "get (queue",
        "readinto (socket", "accept (socket")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    work = Path(tempfile.mkdtemp(prefix="platproxy-profile-"))
    upstream = Registry(work / "upstream").start()
    by_function: collections.Counter[str] = collections.Counter()
    by_thread: collections.Counter[str] = collections.Counter()
    try:
        case, digest = large_case(args.mib)
        size = next(b.size for b in case.blobs if b.digest == digest)
        push_case(upstream, "library/large:1", case)
        (work / "pp").mkdir()
        for run in range(args.runs):
            server = PlatproxyServer(work / "pp", upstream.url).start()
            assert server.proc is not None
            start_cold(f"http://{upstream.address}/v2/library/large/blobs/{digest}", size)
            raw = work / f"samples-{run}.txt"
            sampler = subprocess.Popen([spy, "record", "--pid", str(server.proc.pid), "--rate", "250", "--threads",
                                        "--format", "raw", "-o", str(raw), "--nonblocking", "--duration", "3"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            time.sleep(0.7)  # py-spy attached
            took = curl_many(f"http://{server.address}/v2/library/large/blobs/{digest}", 1, size)
            print(f"run {run + 1}: {size / took / 1e6:.0f} MB/s")
            sampler.wait()
            server.stop()
            for line in raw.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                frames = stack.split(";")
                if any(mark in frames[-1] for mark in IDLE):
                    continue
                thread = frames[0].split(":")[-1].strip().rstrip('"').split("-")[0] or frames[0]
                by_thread[thread] += int(count)
                by_function[frames[-1].split(" (")[0] + " (" + frames[-1].split("/")[-1]] += int(count)
    finally:
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)
    busy = sum(by_thread.values()) or 1
    print(f"\nbusy samples: {busy}\nby thread:")
    for name, count in by_thread.most_common():
        print(f"  {100 * count / busy:5.1f}%  {name}")
    print("by function (self):")
    for name, count in by_function.most_common(15):
        print(f"  {100 * count / busy:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
