"""Blobs: where a stored one is handed out from, and the single-flight fill of a missing one.

A digest hit never contacts the upstream (once the repository asked with is known to hold it:
``members``).  A miss joins (or starts) the single-flight fill for that digest, bounded by
``pace``, which the store coordinates and commits only after the digest matched.  How the bytes
then reach a client (sendfile, Range, a cut connection for a failed fill) is ``http.blobs``'s.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from proxy.config import LimitsConfig
from proxy.errors import BlobInvalid, StorageFailed, Subject, UpstreamError, UpstreamFailed
from proxy.oci.descriptors import referenced
from proxy.oci.digests import matches
from proxy.oci.schema1 import EMPTY_TAR, EMPTY_TAR_DIGEST
from proxy.pull.fills import Fills
from proxy.pull.members import Members
from proxy.pull.pace import Pace
from proxy.pull.route import Route
from proxy.registry.client import Upstream
from proxy.storage.base import LocalFile, Redirect, Store
from proxy.storage.staging import Fill

log = structlog.get_logger("platproxy.blobs")


def skipping(sink: Callable[[memoryview], None], count: int) -> Callable[[memoryview], None]:
    """``sink`` for every byte after the first ``count``: a fill that another replica had
    already streamed ``count`` bytes into carries on from there when it fetches the rest."""
    left = count

    def take(piece: memoryview) -> None:
        nonlocal left
        if left >= len(piece):
            left -= len(piece)
            return
        sink(piece[left:] if left else piece)
        left = 0

    return take if count else sink


@dataclass(frozen=True)
class CacheStatus:
    writable: bool
    problem: str
    path: str
    backend: dict[str, Any] | None
    """The store beyond the cache directory (a bucket), as it describes itself."""


SMALL_BLOB = 256 * 1024
"""Blobs up to this size (known from a manifest) are fetched whole on the loop, not by a fill."""
PREFETCHED_KEPT = 4096


class BlobService:
    def __init__(
        self, store: Store, fills: Fills, upstreams: dict[str, Upstream], members: Members | None = None,
        limits: LimitsConfig | None = None,
    ) -> None:  # fmt: skip
        self.limits = limits or LimitsConfig()
        self.store = store
        self.fills = fills
        self.upstreams = upstreams
        self.members = members
        self.in_use: dict[str, int] = {}
        self._filling_for: dict[str, tuple[str, str]] = {}
        """The (upstream, repository) each fill in flight was started for."""
        self._small: dict[str, asyncio.Future[bytes]] = {}
        self._prefetching: set[asyncio.Future[None]] = set()
        self._prefetched: dict[str, None] = {}
        """Blobs a prefetch kept that no client has asked for yet (their first answer says so)."""

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
        """The size of a stored blob; ``None`` when it must be filled (or the store is unreachable).

        The empty layer of schema 1 conversions is platproxy's own: stored on first request, never
        asked of the upstream (which may not have it; Docker 1.6-1.9 fetch it all the same).
        """
        try:
            size = await self.store.stat(digest)
            if size is None and digest == EMPTY_TAR_DIGEST:
                await self.store.save(digest, EMPTY_TAR)
                size = len(EMPTY_TAR)
            return size
        except OSError as exc:
            log.warning("store unavailable", digest=digest, error=str(exc))
            return None

    async def small(self, route: Route, digest: str, *, prefetch: bool = False) -> bytes | None:
        """A small blob (an image config, a thin layer) fetched whole, verified and kept, when a
        manifest of this repository gave its size and it is at most ``SMALL_BLOB``; ``None`` when
        it goes through a fill instead.

        Why: a fill (a worker thread with its own connection, a staging file, waiting clients fed
        as it grows) is what large layers need, and for a config of a few KiB it is most of a cold
        pull's time.  This asks on the upstream's pooled connection, once for all who want it at
        the same moment.  Not on a shared store: there replicas agree on one fetch through leases.
        """
        if self.store.shared or self.members is None:
            return None
        size = self.members.size(route, digest)
        if size is None or size > SMALL_BLOB:
            return None
        task = self._small.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._fetch_small(route, digest, size, prefetch))
            self._small[digest] = task
            task.add_done_callback(lambda _: self._small.pop(digest, None))
        data = await asyncio.shield(task)
        if not prefetch:
            self._prefetched.pop(digest, None)  # a client has it now: a later answer is a plain hit
        return data

    def prefetch(self, route: Route, manifest: bytes) -> None:
        """A manifest was just fetched for a client: start fetching its small blobs (the config,
        thin layers) now, so that they are here, or on their way, when the client asks for them a
        moment later; large layers wait for the client (it may hold them already).  Not for an
        upstream that takes each client's own credentials: a fetch there is the client's own."""
        if self.store.shared or self.members is None or route.upstream.auth == "passthrough":
            return
        for digest, size in referenced(manifest).items():
            if size is not None and size <= SMALL_BLOB and digest not in self._small:
                task = asyncio.ensure_future(self._prefetch_one(route, digest))
                self._prefetching.add(task)
                task.add_done_callback(self._prefetching.discard)

    async def _prefetch_one(self, route: Route, digest: str) -> None:
        try:
            if await self.store.stat(digest) is None:
                await self.small(route, digest, prefetch=True)
        except Exception as exc:
            log.debug("prefetch failed", digest=digest, error=str(exc))

    def first_since_prefetch(self, digest: str) -> bool:
        """True once for a stored blob a prefetch brought: its first answer is no cache hit."""
        return self._prefetched.pop(digest, 0) is None

    async def _fetch_small(self, route: Route, digest: str, size: int, prefetch: bool) -> bytes:
        up = self.upstreams[route.upstream.name]
        try:
            data = await up.get_small_blob(route.repo, digest, size)
        except UpstreamError as exc:
            raise UpstreamFailed(exc, Subject.BLOB, f"blob {digest}") from None
        if data is None:
            log.warning("blob not kept: the upstream sent it longer than the manifest says", digest=digest,
                        error=f"longer than {size} bytes")  # fmt: skip
            raise BlobInvalid(f"blob {digest} could not be fetched intact",
                              {"error": f"the upstream sent more than the manifest's {size} bytes"})  # fmt: skip
        if len(data) != size or not matches(digest, data):
            error = f"{len(data)} bytes that do not match the digest (expected {size})"
            raise BlobInvalid(f"blob {digest} could not be fetched intact", {"error": error})
        try:
            await self.store.save(digest, data)
        except OSError as exc:
            log.warning("small blob served, not kept: the cache cannot be written", digest=digest, error=str(exc))
            return data
        if prefetch:  # marked before any waiting client resumes (it then takes the mark away)
            self._prefetched[digest] = None
            while len(self._prefetched) > PREFETCHED_KEPT:
                del self._prefetched[next(iter(self._prefetched))]
        return data

    async def confirm(self, route: Route, digest: str) -> None:
        """Raise unless the blob ``digest`` may be served under ``route`` (see ``members``)."""
        if self.members is not None:
            await self.members.confirm(route, "blob", digest, lambda: self.held(route, digest))

    async def held(self, route: Route, digest: str) -> bool:
        """Stored, or being filled for another repository: what a client of ``route`` would be
        served without the upstream's word for it (joining a fill started for the same repository
        is as good as fetching it: the upstream's answer to that fetch is the client's answer)."""
        if digest in self.fills.active:
            return self._filling_for.get(digest) != (route.upstream.name, route.repo)
        return await self.stored_size(digest) is not None

    async def locate_stored(self, digest: str) -> LocalFile | Redirect | None:
        """Where a stored blob is handed out from (a file, a redirect; ``None``: streamed, see
        ``read_range``), its use noted for eviction; ``StorageFailed`` when the store cannot say."""
        try:
            where = await self.store.locate(digest)
        except OSError as exc:
            raise StorageFailed(f"blob {digest}", exc) from None
        self.store.touch(digest)
        return where

    def read_range(self, digest: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """A stored blob's bytes ``[start, end)``, as the store streams them."""
        return self.store.read_range(digest, start, end)

    def cache_status(self) -> CacheStatus:
        """Can the cache take new content (a file made and removed in its staging directory), and
        what store is behind it (``describe``: ``None`` for the cache directory alone)?"""
        try:
            fd, name = tempfile.mkstemp(dir=self.store.tmp, prefix="readyz.")
            os.close(fd)
            os.unlink(name)
            writable, problem = True, ""
        except OSError as exc:
            writable, problem = False, exc.strerror or str(exc)
        return CacheStatus(writable, problem, str(self.store.tmp.parent), self.store.describe())

    async def store_problem(self) -> str:
        """What keeps the store behind the cache from answering (``""``: nothing)."""
        return await self.store.ping()

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
        known = self.members.size(route, digest) if self.members is not None else None
        limit = known if known is not None else self.limits.max_blob_size

        async def copy(fill: Fill) -> None:
            have = fill.written  # what another replica streamed to this fill before it stopped
            pace = Pace(up.name, limit, self.limits.min_fill_rate, self.limits.read_timeout)
            progress = fill.progress_reporter()

            def headers(size: int | None) -> None:
                pace.headers(size)
                fill.size = size
                fill.headers_ready.set()

            writer = fill.writer
            store, check = pace.sink(skipping(writer.store, have)), skipping(writer.check, have)
            copied = await up.copy_blob(route.repo, digest, headers, store, check,
                                        lambda total: progress(max(total, have)))  # fmt: skip
            fill.reached(max(copied, have))
            if fill.size is not None and fill.written != fill.size:
                raise UpstreamError(up.name, 502, f"short body: {fill.written} of {fill.size} bytes")

        async def fill_here(fill: Fill) -> None:
            await self.store.fill(fill, copy)  # the store may have it filled by another replica

        try:
            fill, started = self.fills.join_or_start(digest, fill_here)
        except OSError as exc:  # no temporary file: the cache is full or read-only
            raise StorageFailed(f"blob {digest}", exc) from None
        if started:
            for done in [d for d in self._filling_for if d not in self.fills.active]:
                del self._filling_for[done]
            self._filling_for[digest] = (route.upstream.name, route.repo)
        await fill.headers_ready.wait()
        if fill.finished and fill.error is not None and fill.written == 0:
            error = fill.error
            if isinstance(error, UpstreamError):
                raise UpstreamFailed(error, Subject.BLOB, f"blob {digest}")
            if isinstance(error, OSError):
                raise StorageFailed(f"blob {digest}", error)
            log.warning("blob fill failed", digest=digest, error=str(error))
            raise BlobInvalid(f"blob {digest} could not be fetched intact", {"error": str(error)})
        if started and self.members is not None and fill.error is None:  # the upstream gave it for this repository
            self.members.add(route, {digest: fill.size})
        return fill, started
