"""Blobs: where a stored one is handed out from, and the single-flight fill of a missing one.

A digest hit never contacts the upstream (once the repository asked with is known to hold it:
``members``).  A miss joins (or starts) the single-flight fill for that digest, bounded by
``pace``, which the store coordinates and commits only after the digest matched.  How the bytes
then reach a client (sendfile, Range, a cut connection for a failed fill) is ``http.blobs``'s.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from proxy.config import LimitsConfig
from proxy.errors import BlobInvalid, StorageFailed, Subject, UpstreamError, UpstreamFailed
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
