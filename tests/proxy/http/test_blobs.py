"""The blob endpoint in-process (``http.blobs``): a stored blob whole, by Range and by HEAD, from
a file store (sendfile) and from a store that streams; an uncached one filled from the test
double while it is sent.  The end-to-end suites cover real clients, cuts and many clients."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.config import UpstreamConfig, load_config
from proxy.http.blobs import blob
from proxy.pull.blobs import BlobService
from proxy.pull.fills import Fills
from proxy.pull.route import Route
from proxy.registry.client import Upstream
from proxy.storage.files import FileStore
from proxy.storage.memory import MemoryStore
from tests.fakeupstream import FakeUpstream

DATA = os.urandom(300_000)
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    upstream.add_blob(DATA)
    yield upstream.start()
    upstream.stop()


async def app_for(store: Any, fake: FakeUpstream, session: aiohttp.ClientSession) -> web.Application:
    config = load_config(None, {"upstreams": [{"name": "up", "url": fake.url}]})
    up = Upstream(UpstreamConfig(name="up", url=fake.url), config.limits, session=session)
    services = SimpleNamespace(blobs=BlobService(store, Fills(store), {"up": up}))
    route = Route(config.upstreams[0], "library/x")

    async def handler(request: web.Request) -> web.StreamResponse:
        return await blob(request, services, route, request.match_info["digest"])  # type: ignore[arg-type]

    app = web.Application()
    app.router.add_route("*", "/v2/library/x/blobs/{digest}", handler)
    return app


@pytest.mark.parametrize("kind", ["files", "memory"])
async def test_a_blob_is_filled_once_then_served_whole_by_range_and_by_head(
    aiohttp_client: Client, fake: FakeUpstream, tmp_path: Path, kind: str
) -> None:
    store = FileStore(tmp_path / "cache") if kind == "files" else MemoryStore(tmp_path / "tmp")
    async with aiohttp.ClientSession() as session:
        client = await aiohttp_client(await app_for(store, fake, session))
        path = f"/v2/library/x/blobs/{DIGEST}"
        first = await client.get(path)  # a miss: streamed from the fill as it arrives
        assert first.status == 200 and await first.read() == DATA
        assert first.headers["X-Platproxy-Cache"] == "miss" and first.headers["Docker-Content-Digest"] == DIGEST
        for _ in range(500):  # the client has every byte once the digest matched; the commit follows
            if await store.stat(DIGEST) is not None:
                break
            await asyncio.sleep(0.01)
        whole = await client.get(path)
        assert whole.status == 200 and await whole.read() == DATA and whole.headers["X-Platproxy-Cache"] == "hit"
        part = await client.get(path, headers={"Range": "bytes=100-199"})
        assert part.status == 206 and await part.read() == DATA[100:200]
        assert part.headers["Content-Range"] == f"bytes 100-199/{len(DATA)}"
        head = await client.head(path)
        assert head.status == 200 and int(head.headers["Content-Length"]) == len(DATA)
        assert fake.count("GET", DIGEST) == 1
