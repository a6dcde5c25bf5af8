"""Single-flight fills: one upstream fetch per blob, streamed to every waiting client.

The first request for an uncached blob starts a ``Fill``: a task, detached from any client so
a disconnect never cancels it, that copies the upstream body into the store's temporary file
while hashing it.  Every client (the first and any late joiner) reads that temporary file from
its own offset, waiting for more bytes as they arrive, so memory stays flat whatever the blob
size.  At the end the digest is checked: on a match the file is renamed into place; on a
mismatch nothing is kept and every reader's connection is cut rather than finished cleanly.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import structlog

from proxy.sizes import CHUNK
from proxy.storage.base import FetchFromUpstream, Store
from proxy.storage.staging import Fill

log = structlog.get_logger("platproxy.fill")


class FillFailed(Exception):
    """The fill ended without a verified blob; readers must cut their connection."""


class Fills:
    """The fills in progress, by digest."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.active: dict[str, Fill] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def join_or_start(self, digest: str, source: FetchFromUpstream) -> tuple[Fill, bool]:
        """The fill for ``digest``; ``True`` when this call started it (a cold miss)."""
        fill = self.active.get(digest)
        if fill is not None:
            return fill, False
        fill = Fill(digest, self.store.writer(digest))
        self.active[digest] = fill
        task = asyncio.create_task(self._run(fill, source))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fill, True

    async def _run(self, fill: Fill, source: FetchFromUpstream) -> None:
        error: BaseException | None = None
        try:
            await source(fill)
            fill.writer.verify()
            fill.verified()  # clients may have their last byte now; durability is ours
            if fill.already_stored:
                fill.writer.abort()
            else:
                fill.writer.announce()  # the budget makes room before the file lands
                await self.store.commit(fill.writer)
        except BaseException as exc:
            fill.writer.abort()
            error = exc
            if fill.ok:  # every client got its verified bytes; only keeping them failed
                log.warning("a verified blob could not be stored", digest=fill.digest, error=str(exc))
        finally:
            self.active.pop(fill.digest, None)
            for done in fill.on_done:
                try:
                    await done()
                except Exception as exc:  # a cleanup failing must not hide the fill's outcome
                    log.warning("fill cleanup failed", digest=fill.digest, error=str(exc))
            fill.finish(error)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def ready_ranges(fill: Fill, start: int, end: int | None) -> AsyncIterator[tuple[int, int]]:
    """``(offset, length)`` ranges of ``start`` .. ``end`` as the fill makes them available.

    The last byte of the response is held back until the fill is verified: a client must
    never receive a complete body whose digest is then found wrong.  On a failed fill this
    raises ``FillFailed`` and the caller cuts the connection.
    """
    pos = start
    while end is None or pos < end:
        if fill.error is not None and not fill.ok:
            raise FillFailed(str(fill.error))
        limit = fill.written if end is None else min(end, fill.written)
        if end is not None and not (fill.ok or fill.finished):
            limit = min(limit, end - 1)
        if pos < limit:
            yield pos, limit - pos
            pos = limit
        elif fill.finished or (fill.ok and pos >= fill.written):
            break
        else:  # more bytes, or the verdict on the held-back last byte
            await fill.wait_beyond(max(fill.written, pos))
    if fill.error is not None and not fill.ok:
        raise FillFailed(str(fill.error))


async def read_fill(fill: Fill, start: int, end: int | None) -> AsyncIterator[bytes]:
    """Bytes ``start`` .. ``end`` (exclusive; ``None``: to the end) of a blob being filled."""
    fd = fill.open_reader()
    try:
        async for offset, length in ready_ranges(fill, start, end):
            while length:
                chunk = os.pread(fd, min(CHUNK, length), offset)
                if not chunk:
                    raise FillFailed("the temporary file ended early")
                offset += len(chunk)
                length -= len(chunk)
                yield chunk
    finally:
        os.close(fd)
