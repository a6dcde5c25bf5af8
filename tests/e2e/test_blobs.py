"""End to end, blobs: Range and HEAD, cached blobs sent to many clients while one leaves, cold
fills shared by every concurrent client (one upstream fetch, late joiners included), and
wrong bytes never kept, every client of such a fill cut.

The real registry (Distribution 2.8) upstream and platproxy as a real process; the wrong-bytes
and slow-blob cases use the test double upstream, because a real registry serves neither
corrupt nor paced bodies on demand.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Seeded
from tests.e2e.test_faults import files_soon
from tests.fakeupstream import FakeUpstream
from tests.registry import Platproxy, request

pytestmark = pytest.mark.e2e
Start = Callable[..., Platproxy]


def test_blob_range_and_head(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/arm64")
    layer = seeded.cases["library/multi:1"].images["linux/arm64/v8"].layers[0]
    path = f"/v2/library/multi/blobs/{layer.digest}"
    hs, hh, _ = request(proxy.port, "HEAD", path)
    assert hs == 200 and int(hh["content-length"]) == layer.size and hh["docker-content-digest"] == layer.digest
    status, headers, body = request(proxy.port, "GET", path, headers={"Range": "bytes=10-19"})
    assert status == 206 and body == layer.data[10:20]
    assert headers["content-range"] == f"bytes 10-19/{layer.size}"
    status, _, body = request(proxy.port, "GET", path)
    assert status == 200 and body == layer.data


def test_a_cached_blob_survives_a_client_leaving_mid_body(seeded: Seeded, platproxy: Start) -> None:
    """Cached blobs are sent from the send threads (``proxy.sending``): a client that resets the
    connection mid-body is no error, and clients at once, whole and Range, get the right bytes."""
    proxy = platproxy(seeded.registry.url, "linux/amd64/v2")
    big = seeded.big_layer
    path = f"/v2/library/big/blobs/{big.digest}"
    assert request(proxy.port, "GET", path)[0] == 200
    files_soon(proxy.cache_dir, "blobs", 1)  # kept: from here on it is a cache hit
    leaver = socket.socket()
    leaver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    leaver.connect(("127.0.0.1", proxy.port))
    leaver.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = 0
    while got < 2**20:
        got += len(leaver.recv(65536))
    url = f"http://{proxy.address}{path}"
    whole = [subprocess.Popen(["sh", "-c", f"curl -sf {url} | sha256sum"], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]  # fmt: skip
    leaver.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    leaver.close()  # a reset, mid-body
    assert ["sha256:" + p.communicate(timeout=60)[0].split()[0] for p in whole] == [big.digest] * 4
    status, headers, body = request(proxy.port, "GET", path, headers={"Range": "bytes=1000000-1999999"})
    assert status == 206 and body == big.data[1000000:2000000]
    assert headers["content-range"] == f"bytes 1000000-1999999/{big.size}"
    assert proxy.wait_for_log('"cache": "hit"') == 5
    assert proxy.wait_for_log('"status": 499, "bytes": 0, "cache": "hit, client left"') == 1
    assert '"status": 500' not in proxy.log() and "unexpected error" not in proxy.log()


def test_32_concurrent_cold_requests_cause_one_upstream_fetch(seeded: Seeded, platproxy: Start) -> None:
    proxy = platproxy(seeded.registry.url, "linux/amd64/v2")
    big = seeded.big_layer
    url = f"http://{proxy.address}/v2/library/big/blobs/{big.digest}"

    async def fetch(session: aiohttp.ClientSession) -> str:
        h = hashlib.sha256()
        async with session.get(url) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_chunked(1 << 20):
                h.update(chunk)
        return "sha256:" + h.hexdigest()

    async def main() -> list[str]:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            return await asyncio.gather(*(fetch(session) for _ in range(32)))

    before = seeded.registry.requests_for(big.digest)
    digests = asyncio.run(main())
    assert digests == [big.digest] * 32
    assert seeded.registry.requests_for(big.digest) - before == 1
    assert proxy.wait_for_log('"cache": "coalesced"')


@pytest.mark.faults
def test_corrupt_blob_is_never_kept_and_the_client_sees_an_error(platproxy: Start, tmp_path: Path) -> None:
    fake = FakeUpstream().start()
    try:
        good = fake.add_blob(b"a" * 300_000)
        bad = fake.add_blob(b"b" * 300_000)
        short = fake.add_blob(b"c" * 300_000)
        fake.corrupt.add(bad)
        fake.short.add(short)
        proxy = platproxy(fake.url, "linux/amd64")
        for digest in (bad, short):
            with pytest.raises(Exception):  # noqa: B017 - a cut connection, whatever the client calls it
                request(proxy.port, "GET", f"/v2/library/x/blobs/{digest}")
            assert not any(proxy.cache_dir.joinpath("blobs").rglob(digest.split(":")[1]))
            assert list(proxy.cache_dir.joinpath("tmp").iterdir()) == []
        status, _, body = request(proxy.port, "GET", f"/v2/library/x/blobs/{good}")
        assert status == 200 and body == b"a" * 300_000
        assert fake.count("GET", bad) == 1  # nothing was cached: a second try would fetch again
    finally:
        fake.stop()


@pytest.mark.faults
def test_every_client_of_a_corrupt_fill_is_cut(platproxy: Start) -> None:
    fake = FakeUpstream().start()
    try:
        bad = fake.add_blob(os.urandom(8 * 2**20))
        fake.corrupt.add(bad)
        proxy = platproxy(fake.url, "linux/amd64")

        async def fetch(session: aiohttp.ClientSession) -> str:
            try:
                async with session.get(f"http://{proxy.address}/v2/library/x/blobs/{bad}") as resp:
                    await resp.read()
                return "complete"
            except aiohttp.ClientError:
                return "cut"

        async def main() -> list[str]:
            async with aiohttp.ClientSession() as session:
                return await asyncio.gather(*(fetch(session) for _ in range(6)))

        assert asyncio.run(main()) == ["cut"] * 6
        assert fake.count("GET", bad) == 1
        assert not list(proxy.cache_dir.joinpath("blobs").rglob(bad.split(":")[1]))
    finally:
        fake.stop()


@pytest.mark.faults
def test_a_late_joiner_gets_the_bytes_already_received_then_the_rest(platproxy: Start) -> None:
    fake = FakeUpstream(chunk_delay=0.01).start()  # 2 MiB in 32 chunks: about 0.3 s
    try:
        data = os.urandom(2 * 2**20)
        digest = fake.add_blob(data)
        proxy = platproxy(fake.url, "linux/amd64")
        url = f"http://{proxy.address}/v2/library/x/blobs/{digest}"

        async def main() -> tuple[bytes, bytes, int]:
            async with aiohttp.ClientSession() as session:
                first = await session.get(url)
                head = await first.content.readexactly(512 * 1024)  # the fill is under way
                async with session.get(url) as late:
                    late_body = await late.read()
                rest = await first.read()
                first.release()
                return head + rest, late_body

        first, late = asyncio.run(main())
        assert first == data and late == data
        assert fake.count("GET", digest) == 1
        assert proxy.wait_for_log('"cache": "coalesced"') == 1
    finally:
        fake.stop()


def test_a_tag_miss_prefetches_its_small_blobs_and_never_its_large_ones(seeded: Seeded, platproxy: Start) -> None:
    """Cold pulls: once a tag's manifest is answered, its config and thin layers are fetched before
    the client asks (the first answer for each says ``prefetched``, later ones ``hit``); a large
    layer waits for a client (it may hold it already)."""
    from proxy.oci.mediatypes import OCI_MANIFEST

    proxy = platproxy(seeded.registry.url, "linux/amd64")
    image = seeded.cases["library/multi:1"].images["linux/amd64"]
    assert request(proxy.port, "GET", "/v2/library/multi/manifests/1", headers={"Accept": OCI_MANIFEST})[0] == 200
    blobs = proxy.cache_dir / "blobs" / "sha256"

    def stored_soon(digest: str) -> bool:
        deadline = time.monotonic() + 10
        while not list(blobs.rglob(digest.split(":")[1])) and time.monotonic() < deadline:
            time.sleep(0.05)
        return bool(list(blobs.rglob(digest.split(":")[1])))

    for blob in (image.config, *image.layers):
        assert stored_soon(blob.digest), blob.digest  # nobody asked for it yet
    status, headers, body = request(proxy.port, "GET", f"/v2/library/multi/blobs/{image.config.digest}")
    assert status == 200 and headers["x-platproxy-cache"] == "prefetched" and body == image.config.data
    assert request(proxy.port, "GET", f"/v2/library/multi/blobs/{image.config.digest}")[1]["x-platproxy-cache"] == "hit"
    big = seeded.cases["library/big:1"].images["linux/amd64"]
    assert request(proxy.port, "GET", "/v2/library/big/manifests/1", headers={"Accept": OCI_MANIFEST})[0] == 200
    assert stored_soon(big.config.digest)
    large = max(big.layers, key=lambda b: len(b.data))
    assert len(large.data) > 2**20 and not list(blobs.rglob(large.digest.split(":")[1]))
