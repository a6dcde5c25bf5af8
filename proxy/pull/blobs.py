"""Blobs: cached ones served from disk (sendfile, Range); uncached ones filled once.

A digest hit never contacts the upstream.  A miss joins (or starts) the single-flight fill
for that digest and streams from it with ``Content-Length`` set up front, so a fill that ends
short or with the wrong digest is seen by the client as a cut connection, never as a clean
200 with a truncated body.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import structlog

from proxy.errors import BlobInvalid, RangeNotSatisfiable, StorageFailed, Subject, UpstreamError, UpstreamFailed
from proxy.pull.fills import CHUNK, Fill, Fills
from proxy.pull.route import Route
from proxy.registry.client import Upstream
from proxy.storage.files import Store
from proxy.storage.s3.lease import next_poll
from proxy.storage.s3.store import S3Store

log = structlog.get_logger("platproxy.blobs")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int
    """Exclusive."""


def parse_range(header: str | None, size: int | None) -> ByteRange | None:
    """One ``bytes=a-b`` range within ``size``; ``None`` for no (or an ignorable) Range header.

    Raises ``RangeNotSatisfiable`` for a range that starts past the end.
    """
    if not header or size is None:
        return None
    m = _RANGE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None  # multi-range or garbage: RFC 9110 allows ignoring it and sending 200
    if m.group(1):
        start = int(m.group(1))
        end = min(int(m.group(2)) + 1, size) if m.group(2) else size
    else:
        start, end = max(size - int(m.group(2)), 0), size
    if start >= size or start >= end:
        raise RangeNotSatisfiable(size)
    return ByteRange(start, end)


class BlobService:
    def __init__(self, store: Store, fills: Fills, upstreams: dict[str, Upstream]) -> None:
        self.store = store
        self.fills = fills
        self.upstreams = upstreams
        self.in_use: dict[str, int] = {}

    @contextmanager
    def pinned(self, digest: str) -> Iterator[None]:
        """Mark a blob as being served: eviction leaves it alone until the send is over."""
        self.in_use[digest] = self.in_use.get(digest, 0) + 1
        try:
            yield
        finally:
            self.in_use[digest] -= 1
            if not self.in_use[digest]:
                del self.in_use[digest]

    async def stored_size(self, digest: str) -> int | None:
        """The size of a stored blob; ``None`` when it must be filled (or the store is unreachable)."""
        try:
            return await self.store.stat(digest)
        except OSError as exc:
            log.warning("store unavailable", digest=digest, error=str(exc))
            return None

    async def head_uncached(self, route: Route, digest: str) -> int | None:
        """HEAD of an uncached blob asks the upstream (a chained cache depends on it)."""
        fill = self.fills.active.get(digest)
        if fill is not None and fill.size is not None:
            return fill.size
        try:
            return await self.upstreams[route.upstream.name].head_blob(route.repo, digest)
        except UpstreamError as exc:
            raise UpstreamFailed(exc, Subject.BLOB, f"blob {digest}") from None

    async def fill(self, route: Route, digest: str) -> tuple[Fill, bool]:
        """Join or start the fill; returns once the upstream's headers arrived (or it failed)."""
        up = self.upstreams[route.upstream.name]

        async def copy(fill: Fill) -> None:
            async with up.open_blob(route.repo, digest) as resp:
                fill.size = resp.content_length
                fill.headers_ready.set()
                async for chunk in resp.content.iter_chunked(CHUNK):
                    fill.writer.write(chunk)
                    up.fetched(len(chunk))
                    await fill.advance(len(chunk))
            if fill.size is not None and fill.written != fill.size:
                raise UpstreamError(up.name, 502, f"short body: {fill.written} of {fill.size} bytes")

        async def copy_shared(fill: Fill) -> None:
            assert isinstance(self.store, S3Store)
            await fill_shared(self.store, fill, copy)

        try:
            fill, started = self.fills.join_or_start(digest, copy_shared if self.store.shared else copy)
        except OSError as exc:  # no temporary file: the cache is full or read-only
            raise StorageFailed(f"blob {digest}", exc) from None
        await fill.headers_ready.wait()
        if fill.finished and fill.error is not None and fill.written == 0:
            error = fill.error
            if isinstance(error, UpstreamError):
                raise UpstreamFailed(error, Subject.BLOB, f"blob {digest}")
            if isinstance(error, OSError):
                raise StorageFailed(f"blob {digest}", error)
            log.warning("blob fill failed", digest=digest, error=str(error))
            raise BlobInvalid(f"blob {digest} could not be fetched intact", {"error": str(error)})
        return fill, started


async def fill_shared(store: S3Store, fill: Fill, from_upstream: Callable[[Fill], Awaitable[None]]) -> None:
    """One upstream fetch per blob across replicas: the lease holder fetches, the others wait.

    A replica that finds the blob in the bucket (already, or after waiting on another's lease)
    copies it from there into its own staging file, verified like any fill, and streams that to
    its clients.  A lease left by a dead replica expires and is taken over.
    """
    pause = 0.0
    while True:
        size = await store.stat(fill.digest)
        if size is not None:
            fill.size = size
            fill.already_stored = True
            fill.headers_ready.set()
            async for chunk in store.open_range(fill.digest, 0, size):
                fill.writer.write(chunk)
                await fill.advance(len(chunk))
            return
        lease = await store.acquire(fill.digest)
        if lease is not None:
            fill.on_done.append(lease.release)
            if await store.stat(fill.digest) is None:  # not finished by the previous holder meanwhile
                store.follow(fill)  # upload parts while the download goes on
                await from_upstream(fill)
                return
            continue
        pause = next_poll(pause, store.config.poll_interval)
        await asyncio.sleep(pause)
