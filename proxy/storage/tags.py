"""Tag records, local and shared, behind one face: what the manifest service reads and writes.

Each replica keeps its own SQLite index (``tagindex``: fast, and it answers while the bucket is
unreachable); with a shared store the records are also kept in the bucket (``sharedtags``), and
the most recently checked of the two wins, so a tag another replica fetched or revalidated is
answered here without asking the upstream.  Writes go to both; a shared write that fails is a
log line (the local index already has the record), a local write that fails is ``StorageFailed``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from proxy.errors import StorageFailed
from proxy.storage.records import TagRecord
from proxy.storage.sharedtags import SharedTags, newer
from proxy.storage.tagindex import TagIndex


class TagRecords:
    def __init__(self, index: TagIndex, shared: SharedTags | None = None) -> None:
        self.index = index
        self.shared = shared

    def get(self, upstream: str, repo: str, tag: str, host: str) -> TagRecord | None:
        """This replica's record (no I/O beyond SQLite): the fast path of every tag pull."""
        return self.index.get(upstream, repo, tag, host)

    async def latest(self, upstream: str, repo: str, tag: str, host: str) -> TagRecord | None:
        """The most recently checked record, here or in the bucket (kept here when it is newer)."""
        record = self.index.get(upstream, repo, tag, host)
        if self.shared is None:
            return record
        found = newer(record, await self.shared.get(upstream, repo, tag, host))
        if found is not None and found is not record:
            self._put_local(found)
            record = found
        return record

    @asynccontextmanager
    async def asking(
        self, upstream: str, repo: str, tag: str, host: str, usable: Callable[[TagRecord], bool]
    ) -> AsyncIterator[TagRecord | None]:
        """Around asking the upstream for a tag: yields ``None`` when this replica should ask
        (alone, or holding the tag's shared lease until the block ends), or a ``usable`` record
        another replica kept while this one waited (answer with that, ask nothing)."""
        if self.shared is None:
            yield None
            return
        lease, found = await self.shared.turn(upstream, repo, tag, host, usable)
        if found is not None:
            self._put_local(found)
            yield found
            return
        try:
            yield None
        finally:
            if lease is not None:
                await lease.release(stored=True)

    async def keep(self, record: TagRecord) -> None:
        """A new or moved record: here (``StorageFailed`` if it cannot be written), then shared."""
        self._put_local(record)
        if self.shared is not None:
            await self.shared.put(record)

    async def revalidated(self, record: TagRecord, now: float) -> None:
        """The upstream confirmed the record at ``now``: best effort, a full disk still serves."""
        self.index.touch(record, now)
        if self.shared is not None:
            await self.shared.put(dataclasses.replace(record, checked_at=now))

    def _put_local(self, record: TagRecord) -> None:
        try:
            self.index.put(record)
        except sqlite3.Error as exc:
            raise StorageFailed(f"the record of {record.repo}:{record.tag}", exc) from None

    def tags(self, upstream: str, repo: str) -> list[str]:
        return self.index.tags(upstream, repo)

    def close(self) -> None:
        self.index.close()
