"""The disk budget: least-recently-used eviction with protections.

``choose_victims`` is pure: given every entry (digest, size, last use), the budget and the set
of protected digests, it returns what to delete, oldest first, until the total fits.  The
``Evictor`` feeds it: content being filled or served is protected (Distribution's TTL vacuum
left clients with truncated blobs, distribution#2367), and so is everything a tag needs while
its upstream is unreachable (an offline node must keep its only copy, distribution#2762).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable, Iterable

import structlog

from proxy.metrics import Metrics
from proxy.oci.descriptors import references
from proxy.storage.files import FileStore
from proxy.storage.records import ContentEntry, TagRecord
from proxy.storage.tagindex import TagIndex

log = structlog.get_logger("platproxy.evict")


Entry = ContentEntry
DIGEST_SHAPED = re.compile(rb"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
"""Every digest a manifest names (references, and anything else digest-shaped): a superset of
``references``, found without parsing."""


def choose_victims(entries: Iterable[Entry], budget: int, protected: set[str]) -> list[Entry]:
    """Oldest first, skipping protected ones, until the total is within ``budget``."""
    ordered = sorted(entries, key=lambda e: (e.last_used, e.digest))
    total = sum(e.size for e in ordered)
    victims = []
    for entry in ordered:
        if total <= budget:
            break
        if entry.digest in protected:
            continue
        victims.append(entry)
        total -= entry.size
    return victims


def needed_by(store: FileStore, index: TagIndex, records: Iterable[TagRecord]) -> set[str]:
    """Every digest these tag records need: their manifests and indexes, the conversions made
    from them for old clients, and what all of those refer to."""
    manifests: set[str] = set()
    for record in records:
        manifests.update(filter(None, (record.digest, record.index_digest)))
    manifests |= index.conversions_of(manifests)
    needed = set(manifests)
    for digest in manifests:
        data = store.read(digest, touch=False)
        if data is not None:
            needed |= references(data)
    return needed


class Evictor:
    def __init__(
        self,
        store: FileStore,
        tags: TagIndex,
        budget: int,
        busy: Callable[[], set[str]],
        unreachable: Callable[[], set[str]],
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``busy``: digests being filled or served; ``unreachable``: names of failing upstreams."""
        self.store = store
        self.tags = tags
        self.budget = budget
        self.busy = busy
        self.unreachable = unreachable
        self.metrics = metrics
        self.clock = clock
        self.pending: dict[str, float] = {}
        self.dropped: list[TagRecord] = []
        """The tag records the last eviction dropped with their content."""
        self._refs: dict[str, set[str]] = {}
        self.total = tags.content_total()
        self._gauge(self.total)

    def reconcile(self) -> int:
        """Make the usage table match the files on disk (files added or removed behind the
        server's back, a crash between a commit and its row); returns the total size."""
        changed = [self._apply(prefix, self.store.shard(prefix)) for prefix in self._shards()]
        return self._total(changed)

    async def reconcile_in_background(self) -> None:
        """``reconcile`` for the server's start: the walk of each directory runs on a thread, so
        a cache of 100k images (200k files) answers in 0.6 s, not 3.1 s, and its usage rows are
        mended a moment later; one directory at a time, so that its memory is a directory's
        (all at once, the walk's lists held 60 MiB at 100k images).  Eviction meanwhile works
        from the rows as they are."""
        started = time.monotonic()
        changed = [self._apply(prefix, await asyncio.to_thread(self.store.shard, prefix)) for prefix in self._shards()]
        self._total(changed, time.monotonic() - started)

    def _shards(self) -> list[str]:
        try:
            return sorted(set(self.store.shards()) | self.tags.content_shards())
        except sqlite3.Error:
            return sorted(self.store.shards())

    def _apply(self, prefix: str, files: list[tuple[str, int, float]]) -> tuple[int, int]:
        """What one directory holds against its rows.  Each difference is looked at again (one
        stat): content committed or evicted while the walk ran is not a difference."""
        on_disk = {digest: (size, mtime) for digest, size, mtime in files}
        try:
            known = self.tags.content_digests(prefix)
            forgotten = [d for d in known - on_disk.keys() if self.store.size(d) is None]
            noted = [(d, *on_disk[d]) for d in on_disk.keys() - known if self.store.size(d) is not None]
            if forgotten or noted:
                self.tags.reconcile_content(noted, forgotten)
            return len(noted), len(forgotten)
        except sqlite3.Error as exc:  # a read-only cache: count what is there, change nothing
            log.warning("cannot reconcile the usage table", error=str(exc))
            return 0, 0

    def _total(self, changed: list[tuple[int, int]], seconds: float | None = None) -> int:
        added, removed = sum(a for a, _ in changed), sum(r for _, r in changed)
        if added or removed:  # (a start with nothing to mend says nothing: the banner comes first)
            log.info("usage table checked against the files", added=added, removed=removed,
                     **({"seconds": round(seconds, 2)} if seconds is not None else {}))  # fmt: skip
        self.total = self.tags.content_total()
        self._gauge(self.total)
        return self.total

    def added(self, digest: str, size: int) -> None:
        self.tags.note_content(digest, size, self.clock())
        self.total += size
        self._gauge(self.total)
        if self.budget and self.total > self.budget:
            self.run()

    def used(self, digest: str) -> None:
        self.pending[digest] = self.clock()

    def protected(self) -> set[str]:
        keep = set(self.busy())
        offline = self.unreachable()
        if offline:
            keep |= needed_by(self.store, self.tags, [r for r in self.tags.all_tags() if r.upstream in offline])
        return keep

    def run(self, budget: int | None = None) -> list[Entry]:
        """Evict down to ``budget`` (default: the configured one); returns what was removed."""
        limit = self.budget if budget is None else budget
        self.dropped = []
        self.tags.touch_content(self.pending)
        self.pending = {}
        victims = choose_victims(self.tags.content_entries(), limit, self.protected())
        for entry in victims:
            self.store.remove(entry.digest)
            self.total -= entry.size
            if self.metrics is not None:
                self.metrics.evictions.inc()
                self.metrics.evicted_bytes.inc(entry.size)
        if victims:
            self.tags.forget_evicted([v.digest for v in victims])
            self.dropped = self.drop_records_needing({v.digest for v in victims})
            log.info("evicted", count=len(victims), bytes=sum(v.size for v in victims), total=self.total, budget=limit,
                     tags_dropped=len(self.dropped))  # fmt: skip
        self._gauge(self.total)
        return victims

    def drop_records_needing(self, gone: set[str]) -> list[TagRecord]:
        """Tag records that needed any of ``gone`` (their manifest, its index, config or layers)
        are dropped with it: a record must not outlive its content (it would be listed as cached,
        and offered as a stale answer that cannot be served).  The next pull asks afresh."""
        named = {d.encode() for d in gone}
        doomed = [r for r in self.tags.all_tags() if self._needs(r, named) & gone]
        for digest in gone:
            self._refs.pop(digest, None)
        if doomed:
            self.tags.delete_tags(doomed)
        return doomed

    def _needs(self, record: TagRecord, named: set[bytes]) -> set[str]:
        """What ``record`` needs, as far as it matters for ``named`` (the digests going, encoded):
        a manifest in which no digest-shaped string is going needs nothing going, without parsing
        it (at 100k tags, parsing every manifest was most of a gc's time)."""
        refs = self._refs.get(record.digest)
        if refs is None:  # a manifest never changes under its digest: read each once
            data = self.store.read(record.digest, touch=False)
            if data is not None and named.isdisjoint(DIGEST_SHAPED.findall(data)):
                refs = set()  # (not remembered: it does need something, just nothing going now)
            else:
                refs = references(data) if data is not None else set()
                if data is not None:
                    self._refs[record.digest] = refs
        return {record.digest, *filter(None, [record.index_digest]), *refs}

    def _gauge(self, total: int) -> None:
        if self.metrics is not None:
            self.metrics.cache_size.set(total)
