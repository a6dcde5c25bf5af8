"""Load: 1,000 concurrent connections mixing cached manifests, cached blobs and cold blobs.

Bounded in count and time; every body is checked against its digest; zero errors allowed; the
server's peak memory stays bounded.  Everything stays on the loopback interface.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import resource
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from proxy.oci.mediatypes import UPSTREAM_ACCEPT
from tests.conftest import Seeded, push_case
from tests.ocibuild import Blob
from tests.registry import Platproxy, Registry, peak_rss_mib, request

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
CONNECTIONS = 1000
MIB = 2**20


def test_1000_concurrent_connections(seeded: Seeded, platproxy: Callable[..., Platproxy], tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    registry = Registry(tmp_path / "reg").start()
    case = seeded.cases["library/multi:1"]
    push_case(registry, "library/multi:1", case)
    cold = [Blob(os.urandom(MIB), "application/octet-stream") for _ in range(20)]
    for blob in cold:
        registry.push_blob("library/multi", blob)
    try:
        proxy = platproxy(registry.url, "linux/arm64")
        chosen = case.digest_of("linux/arm64/v8")
        cached_blobs = [b for i in case.images.values() for b in i.blobs()]
        assert (
            request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers={"Accept": UPSTREAM_ACCEPT})[0] == 200
        )
        for blob in cached_blobs:
            assert request(proxy.port, "GET", f"/v2/library/multi/blobs/{blob.digest}")[0] == 200
        jobs: list[tuple[str, str]] = []  # (path, digest the body must have)
        rnd = random.Random(7)
        for n in range(CONNECTIONS):
            kind = n % 10
            if kind < 2:
                jobs.append(("/v2/library/multi/manifests/1", chosen))
            elif kind < 4:
                digest = case.digest_of(rnd.choice(list(case.images)))
                jobs.append((f"/v2/library/multi/manifests/{digest}", digest))
            elif kind < 7:
                digest = rnd.choice(cached_blobs).digest
                jobs.append((f"/v2/library/multi/blobs/{digest}", digest))
            else:
                digest = rnd.choice(cold).digest
                jobs.append((f"/v2/library/multi/blobs/{digest}", digest))

        async def one(session: aiohttp.ClientSession, path: str, digest: str) -> str:
            h = hashlib.sha256()
            async with session.get(f"http://{proxy.address}{path}", headers={"Accept": UPSTREAM_ACCEPT}) as resp:
                if resp.status != 200:
                    return f"{path}: {resp.status}"
                async for chunk in resp.content.iter_chunked(1 << 16):
                    h.update(chunk)
            return "" if "sha256:" + h.hexdigest() == digest else f"{path}: wrong bytes"

        async def main() -> list[str]:
            connector = aiohttp.TCPConnector(limit=CONNECTIONS, force_close=True)
            timeout = aiohttp.ClientTimeout(total=60)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
                return await asyncio.wait_for(asyncio.gather(*(one(session, p, d) for p, d in jobs)), 90)

        started = time.monotonic()
        errors = [e for e in asyncio.run(main()) if e]
        took = time.monotonic() - started
        assert errors == [], errors[:10]
        assert proxy.proc is not None
        rss = peak_rss_mib(proxy.proc.pid)
        assert rss < 200, f"peak RSS {rss:.0f} MiB"
        for blob in cold:  # single-flight held under load: each cold blob fetched once
            assert registry.requests_for(blob.digest) == 1
        print(f"\n1000 connections: {took:.2f} s, 0 errors, peak RSS {rss:.0f} MiB")
    finally:
        registry.stop()
