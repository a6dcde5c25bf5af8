"""The fleet view at fleet scale: ``platproxy report`` over 5,000 images x 6 platforms, and the
``/fleet`` page drawing the same records in a real headless chromium (time from navigation to
the first page of the matrix drawn, as the page itself measures it).  Goals: report under 2 s,
page under 1 s.

    .venv/bin/python bench/fleet.py [--images 5000] [--runs 3]

The records are made by this script (a cache directory whose fleet table holds them), not by
pulling: the report and the page read records, whatever made them.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.storage.fleet import FleetRecords  # noqa: E402
from proxy.storage.records import FleetRecord  # noqa: E402
from proxy.storage.tagindex import TagIndex  # noqa: E402
from tests.registry import free_port, wait_http  # noqa: E402

PLATFORMS = ("linux/amd64/v1", "linux/amd64/v3", "linux/arm64/v8", "linux/arm/v7", "linux/arm/v6", "linux/ppc64le")
OUTCOMES = (("native", ""), ("native", ""), ("native", ""), ("variant fallback", "v7 node got v6"),
            ("lower level", "v3 host got v1"), ("missing", ""))  # fmt: skip


def seed(root: Path, images: int) -> None:
    index = TagIndex(root / "index.db")
    index.close()
    records = FleetRecords(sqlite3.connect(root / "index.db", isolation_level=None))
    rng = random.Random(7)
    now = time.time()
    batch = []
    for n in range(images):
        image = f"docker.io/team{n % 50}/service{n}:{n % 7}.{n % 13}"
        for platform in PLATFORMS:
            outcome, detail = rng.choice(OUTCOMES)
            batch.append(FleetRecord(image, platform, outcome, detail, "node", f"sha256:{n:064x}",
                                     f"sha256:{n + 1:064x}" if outcome != "missing" else "", platform, "rank 1",
                                     now - 86400, now - rng.random() * 3600, rng.randint(1, 500)))  # fmt: skip
    records.add(batch)


async def page_times(chromium: str, url: str, runs: int) -> list[float]:
    """Seconds from navigation to the matrix drawn, as the page measures it (``data-render-ms``),
    in real time: chromium driven over its DevTools protocol, not with a virtual time budget."""
    port = free_port()
    profile = tempfile.mkdtemp()
    browser = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                "--disable-background-networking", f"--remote-debugging-port={port}",
                                f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    found: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
                        pages = [p for p in await answer.json() if p.get("type") == "page"]
                        if pages:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = iter(range(1, 10**6))

                async def call(method: str, **params: object) -> dict[str, object]:
                    n = next(ids)
                    await ws.send_json({"id": n, "method": method, "params": params})
                    while True:
                        message = await ws.receive_json()
                        if message.get("id") == n:
                            return dict(message.get("result", {}))

                for _ in range(runs):
                    await call("Page.navigate", url=url)
                    for _ in range(400):
                        got = await call(
                            "Runtime.evaluate", expression="document.body && document.body.dataset.renderMs"
                        )
                        value = dict(got.get("result", {})).get("value")  # type: ignore[call-overload]
                        if value:
                            found.append(int(value) / 1000)
                            break
                        await asyncio.sleep(0.025)
    finally:
        browser.terminate()
        browser.wait(30)
        shutil.rmtree(profile, ignore_errors=True)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cache"
        root.mkdir()
        seed(root, args.images)
        base = [sys.executable, "-m", "proxy.cli"]
        times: dict[str, list[float]] = {"report --json": [], "report (table)": [], "page": []}
        for _ in range(args.runs):
            for name, extra in (("report --json", ["--json"]), ("report (table)", [])):
                started = time.monotonic()
                done = subprocess.run([*base, "report", "--cache-dir", str(root), *extra], capture_output=True,
                                      check=False)  # fmt: skip
                times[name].append(time.monotonic() - started)
                assert done.returncode == 0, done.stderr
        port = free_port()
        server = subprocess.Popen([*base, "serve", "--listen", f"127.0.0.1:{port}", "--cache-dir", str(root),
                                   "--platform", "linux/amd64"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_http(port, "/healthz", proc=server)
            if chromium:
                times["page"] = asyncio.run(page_times(chromium, f"http://127.0.0.1:{port}/fleet", args.runs))
        finally:
            server.terminate()
            server.wait(30)
    cells = args.images * len(PLATFORMS)
    print(f"fleet view, {args.images} images x {len(PLATFORMS)} platforms ({cells} records), medians of {args.runs}")
    for name, values in times.items():
        if values:
            print(f"  {name}: {statistics.median(values):.2f} s")
    if not chromium:
        print("  page: chromium is not installed (apt-get install chromium)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
