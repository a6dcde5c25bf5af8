"""The cold-fill lines of the bench: a blob nobody has cached yet, asked for by 1 and by 32 clients
at once, and 100 different cold blobs at once.

Each cold sample starts a fresh server (empty cache), writes back dirty pages and drops the page
cache (root only; the report says whether it could), then reads the blob once straight from the
upstream, so the upstream serves it from memory as a LAN registry with a warm cache would: what is
measured is the proxy's own path (fetch, hash, write, serve), not this machine's disk.  The 32
clients are compared with nginx sending the same 32 streams from platproxy's warm cache (the
floor for moving those bytes here); the 100 different blobs give the peak RSS of many fills at
once.  Correctness is checked outside the timed runs (every body hashed).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.ocibuild import Blob
from tests.registry import Registry

Record = Callable[[str, str, float], None]
MANY, MANY_MIB = 100, 4


def drop_caches() -> bool:
    """Write back and drop the page cache (root only); ``False`` where this process may not."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def start_cold(direct: str, size: int) -> bool:
    """Drop the page cache, then read the blob once straight from the upstream (``direct``), so
    the upstream serves it from memory and nothing of the proxy's is cached; ``drop_caches``'s answer."""
    from bench.servers import curl_many

    dropped = drop_caches()
    curl_many(direct, 1, size)
    return dropped


def wait_kept(server: Any, digest: str) -> float:
    """Seconds until the proxy has the blob verified and in its store (polled every 5 ms).

    Distribution's proxy sends every byte to the client first and verifies the digest after
    (its blob writer's commit); platproxy holds the last byte until the digest matched and keeps
    the file after.  This line shows when each has the blob for the next client."""
    hexa = digest.split(":", 1)[1]
    if hasattr(server, "storage"):  # Distribution's filesystem driver
        path = server.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexa[:2] / hexa / "data"
    else:
        path = server.cache / "blobs" / "sha256" / hexa[:2] / hexa
    started = time.monotonic()
    while not path.exists():
        if time.monotonic() - started > 60:
            raise RuntimeError(f"{path} never appeared")
        time.sleep(0.005)
    return time.monotonic() - started


def many_blobs(upstream: Registry, name: str) -> list[str]:
    """``MANY`` different random blobs of ``MANY_MIB`` MiB pushed to ``name``; their digests."""
    digests = []
    for _ in range(MANY):
        blob = Blob(os.urandom(MANY_MIB * 2**20), "application/octet-stream")
        upstream.push_blob(name, blob)
        digests.append(blob.digest)
    return digests


def fetch_all(urls: list[str]) -> list[str]:
    """Download every URL at once (one curl each); the sha256 of each body."""
    procs = [subprocess.Popen(["sh", "-c", f"curl -sf {url} | sha256sum"], stdout=subprocess.PIPE, text=True)
             for url in urls]  # fmt: skip
    return ["sha256:" + p.communicate()[0].split()[0] for p in procs]


def section(
    upstream: Registry, work: Path, record: Record, reps: int, digest: str, size: int, mib: int, servers: list[Any]
) -> None:
    """The lines above; the one-blob servers are added to ``servers`` (the run's peak RSS line and
    teardown), the 100-blob ones have a peak RSS line of their own."""
    from bench.servers import DistributionProxy, Nginx, PlatproxyServer, curl_many, verify_many

    makers: list[tuple[str, Callable[[], Any]]] = [
        ("distribution", lambda: DistributionProxy(work / "dist", upstream.url)),
        ("platproxy", lambda: PlatproxyServer(work / "pp", upstream.url)),
    ]
    path = f"/v2/library/large/blobs/{digest}"
    direct = f"http://{upstream.address}{path}"
    dropped = True

    def cold() -> None:
        nonlocal dropped
        dropped = start_cold(direct, size) and dropped

    one, many = f"1 cold client, same {mib} MiB blob (MB/s)", f"32 cold clients, same {mib} MiB blob (s)"
    kept = f"1 cold client, same {mib} MiB blob: until verified and kept (s)"
    for _ in range(reps):
        cold()
        record(one, "direct", size / curl_many(direct, 1, size) / 1e6)
        for who, make in makers:
            server = make().start()  # correctness pass: 32 cold clients, every body hashed
            servers.append(server)
            verify_many(f"http://{server.address}{path}", 32, digest)
            server.stop()
            for clients in (1, 32):
                server = make().start()
                servers.append(server)
                cold()
                before = upstream.requests_for(digest)
                took = curl_many(f"http://{server.address}{path}", clients, size)
                if clients == 1:
                    record(one, who, size / took / 1e6)
                    record(kept, who, took + wait_kept(server, digest))
                    server.stop()
                    continue
                record(many, who, took)
                record("32 cold clients: upstream fetches", who, upstream.requests_for(digest) - before)
                if who == "platproxy":  # clients have their bytes before the file is synced and renamed
                    wait_kept(server, digest)
                server.stop()
                if who == "platproxy":  # the same 32 streams from the cache it just filled
                    nginx = Nginx(work / "nginx-cold", server.cache / "blobs").start()
                    servers.append(nginx)
                    curl_many(f"http://{nginx.address}{path}", 1, size)  # warm
                    record(many, "nginx", curl_many(f"http://{nginx.address}{path}", 32, size))
                    nginx.stop()
    digests = many_blobs(upstream, "library/many")
    for who, make in makers:
        server = make().start()
        try:
            cold()
            before = sum(upstream.requests_for(d) for d in digests)
            urls = [f"http://{server.address}/v2/library/many/blobs/{d}" for d in digests]
            started = time.monotonic()
            sums = fetch_all(urls)
            took = time.monotonic() - started
        finally:
            server.stop()
        wrong = sum(a != b for a, b in zip(sums, digests, strict=True))
        if wrong:
            raise RuntimeError(f"{who} served wrong bytes for {wrong} blobs")
        label = f"{MANY} cold clients, {MANY} different {MANY_MIB} MiB blobs"
        record(f"{label} (s)", who, took)
        record(f"{label}: peak RSS (MiB)", who, server.rss)
        record(f"{label}: upstream fetches", who, sum(upstream.requests_for(d) for d in digests) - before)
    record("page cache dropped before each cold sample (1 = yes)", "platproxy", float(dropped))
