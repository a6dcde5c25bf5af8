"""The disk budget: least-recently-used eviction with protections.

``choose_victims`` is pure: given every entry (digest, size, last use), the budget and the set
of protected digests, it returns what to delete, oldest first, until the total fits.  The
``Evictor`` feeds it: content being filled or served is protected (Distribution's TTL vacuum
left clients with truncated blobs, distribution#2367), and so is everything a tag needs while
its upstream is unreachable (an offline node must keep its only copy, distribution#2762).
"""

from __future__ import annotations

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
        try:
            self.total = self.reconcile()
        except sqlite3.Error as exc:  # a read-only cache: count what is there, change nothing
            log.warning("cannot reconcile the usage table", error=str(exc))
            self.total = tags.content_total()

    def reconcile(self) -> int:
        """Make the usage table match the files on disk; returns the total size."""
        on_disk = dict(self.store.inventory())
        known = {e.digest for e in self.tags.content_entries()}
        for digest in known - on_disk.keys():
            self.tags.forget_content(digest)
        for digest in on_disk.keys() - known:
            stat = on_disk[digest]
            self.tags.note_content(digest, stat.st_size, stat.st_mtime)
        total = self.tags.content_total()
        self._gauge(total)
        return total

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
            self.tags.forget_content(entry.digest)
            self.tags.forget_manifest(entry.digest)
            self.tags.forget_conversions({entry.digest})
            self.total -= entry.size
            if self.metrics is not None:
                self.metrics.evictions.inc()
                self.metrics.evicted_bytes.inc(entry.size)
        if victims:
            self.dropped = self.drop_records_needing({v.digest for v in victims})
            log.info("evicted", count=len(victims), bytes=sum(v.size for v in victims), total=self.total, budget=limit,
                     tags_dropped=len(self.dropped))  # fmt: skip
        self._gauge(self.total)
        return victims

    def drop_records_needing(self, gone: set[str]) -> list[TagRecord]:
        """Tag records that needed any of ``gone`` (their manifest, its index, config or layers)
        are dropped with it: a record must not outlive its content (it would be listed as cached,
        and offered as a stale answer that cannot be served).  The next pull asks afresh."""
        doomed = [r for r in self.tags.all_tags() if self._needs(r) & gone]
        for digest in gone:
            self._refs.pop(digest, None)
        if doomed:
            self.tags.delete_tags(doomed)
        return doomed

    def _needs(self, record: TagRecord) -> set[str]:
        refs = self._refs.get(record.digest)
        if refs is None:  # a manifest never changes under its digest: read each once
            data = self.store.read(record.digest, touch=False)
            refs = references(data) if data is not None else set()
            if data is not None:
                self._refs[record.digest] = refs
        return {record.digest, *filter(None, [record.index_digest]), *refs}

    def _gauge(self, total: int) -> None:
        if self.metrics is not None:
            self.metrics.cache_size.set(total)
