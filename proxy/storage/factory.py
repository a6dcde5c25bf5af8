"""The one place that turns ``[store]`` into a store: the file store or the S3 store, the tag
records that go with it, and the disk budget where one applies.

Nothing outside ``proxy.storage`` names a backend: the services get a ``Store`` and
``TagRecords``, the ``cache`` commands a cache directory (``open_cache_directory``) or a bucket's
collector (``with_bucket_collector``), and ``Storage.apply_budget`` starts least-recently-used eviction only where the
content is this replica's own (a shared bucket is kept within its budget by a collection,
``proxy.storage.s3.collect``).
aiobotocore is imported only when an S3 store is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from proxy.config import Config
from proxy.errors import StoreUnavailable
from proxy.metrics import Metrics
from proxy.oci.digests import matches
from proxy.sizes import MAX_MANIFEST_SIZE
from proxy.storage.base import Store
from proxy.storage.budget import Evictor
from proxy.storage.files import FileStore
from proxy.storage.fleet import FleetRecords
from proxy.storage.nodes import NodeRecords
from proxy.storage.records import FleetRecord, NodeRecord
from proxy.storage.s3.bucket import blob_key, s3_client_missing
from proxy.storage.tagindex import TagIndex
from proxy.storage.tags import TagRecords

if TYPE_CHECKING:
    from proxy.storage.s3.collect import Collector

T = TypeVar("T")


def cache_dir_problem(root: Path) -> str:
    """Why ``root`` cannot hold the cache (empty: it can), found before anything is opened in it.

    Checked with the process's own permissions (``os.access``, which honours read-only mounts):
    an existing directory must be readable, writable and searchable, except a cache that came
    back read-only (it holds an index: what is cached is still served, and ``/readyz`` says the
    cache is not writable); a missing one must be creatable, under a writable directory.
    Nothing is created here (``config check`` calls it)."""
    path = root.absolute()
    if path.exists():
        if not path.is_dir():
            return f"{root} is not a directory"
        if os.access(path, os.R_OK | os.W_OK | os.X_OK):
            return ""
        if not os.access(path, os.R_OK | os.X_OK):
            return f"{root} is not readable for this process (it needs to read and write there)"
        if (path / "index.db").is_file():
            return ""  # a cache come back read-only (a remount after an error): served degraded, /readyz 503
        return f"{root} is read-only for this process and holds no cache (it needs to write there)"
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{root} cannot be made: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{root} does not exist and cannot be made: {parent} is not writable for this process"
    return ""


def backend_problem(config: Config) -> str:
    """Why the configured backend cannot be used on this installation (empty: it can)."""
    return s3_client_missing() if config.store.backend == "s3" else ""


@dataclass
class Storage:
    store: Store
    tags: TagRecords
    nodes: NodeRecords
    """Node registrations (kept with the tag records; shared through the bucket)."""
    fleet: FleetRecords
    """What each platform got for each image (kept with the tag records; shared through the bucket)."""
    _files: FileStore | None
    _metrics: Metrics | None
    _reconciling: asyncio.Task[None] | None = None

    def apply_budget(self, budget: int, busy: Callable[[], set[str]], unreachable: Callable[[], set[str]]) -> None:
        """Evict least-recently-used content beyond ``budget`` bytes, never what ``busy`` names
        (being filled or served) nor what tags of ``unreachable`` upstreams need."""
        if self._files is None:
            return  # a bucket is collected as a whole ([store.s3] max_size), not per replica
        evictor = Evictor(self._files, self.tags.index, budget, busy=busy, unreachable=unreachable,
                          metrics=self._metrics)  # fmt: skip
        self._files.on_added, self._files.on_used = evictor.added, evictor.used
        self._reconciling = asyncio.get_running_loop().create_task(evictor.reconcile_in_background())

    async def close(self) -> None:
        if self._reconciling is not None:
            self._reconciling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciling
        await self.store.close()
        self.tags.close()


async def open_storage(config: Config, root: Path, metrics: Metrics | None = None) -> Storage:
    """The configured store under (or staged under) ``root``, opened, with its tag records."""
    root.mkdir(parents=True, exist_ok=True)
    index = TagIndex(root / "index.db")
    if config.store.backend == "s3":
        from proxy.storage.s3.store import S3Store
        from proxy.storage.sharedtags import SharedTags

        s3 = S3Store(config.store.s3, config.limits, root / "tmp")
        if metrics is not None:
            s3.bucket.on_call = lambda op, outcome: metrics.store_requests.labels(op, outcome).inc()
            s3.leases.on_lease = lambda outcome: metrics.leases.labels(outcome).inc()
        await s3.open()
        return Storage(s3, TagRecords(index, SharedTags(s3.bucket, s3.leases)), NodeRecords(index.db, s3.bucket),
                       FleetRecords(index.db, s3.bucket), None,
                       metrics)  # fmt: skip
    files = FileStore(root)
    return Storage(files, TagRecords(index), NodeRecords(index.db), FleetRecords(index.db), files, metrics)


class NoCache(Exception):
    """A maintenance command was pointed at a directory that holds no cache."""


def open_cache_directory(config: Config) -> tuple[Path, FileStore, TagIndex]:
    """The cache directory of ``config`` for the ``cache`` commands: its root, its files (the
    staging directory left alone: a running server may be filling) and its tag index."""
    root = config.cache.path()
    if not (root / "index.db").exists():
        raise NoCache(f"no platproxy cache at {root}")
    return root, FileStore(root, clean_tmp=False), TagIndex(root / "index.db")


def node_registrations(config: Config) -> list[NodeRecord]:
    """The node registrations of ``config``'s cache directory, or of its bucket (``StoreUnavailable``
    when that cannot be read); ``NoCache`` when there is no cache directory."""
    if config.store.backend != "s3":
        _, _, index = open_cache_directory(config)
        try:
            return NodeRecords(index.db).local()
        finally:
            index.close()

    async def read(collector: Collector) -> list[NodeRecord]:
        found = await NodeRecords(sqlite3.connect(":memory:"), collector.bucket).shared()
        if found is None:
            raise StoreUnavailable("cannot list the node registrations")
        return found

    return asyncio.run(with_bucket_collector(config, read))


Load = Callable[[str], Awaitable[bytes | None]]


async def with_fleet_records(config: Config, work: Callable[[list[FleetRecord], list[str], Load], Awaitable[T]]) -> T:
    """``work`` with the fleet records of ``config``'s cache directory (``NoCache``: none there;
    ``FleetError``: unreadable) or of its bucket, every replica's merged (``StoreUnavailable``),
    what could not be read (one line each), and a reader of stored manifests and configs by
    digest (verified; ``None``: not stored).  Nothing is written."""
    if config.store.backend != "s3":
        _, files, index = open_cache_directory(config)

        async def read(digest: str) -> bytes | None:
            size = await files.stat(digest)
            data = await files.get(digest) if size is not None and size <= MAX_MANIFEST_SIZE else None
            return data if data is not None and matches(digest, data) else None

        try:
            return await work(FleetRecords(index.db).local(), [], read)
        finally:
            index.close()

    async def on_bucket(collector: Collector) -> T:
        records, problems = await FleetRecords(sqlite3.connect(":memory:"), collector.bucket).shared()
        prefix = config.store.s3.prefix

        async def load(digest: str) -> bytes | None:
            data = await collector.bucket.read(blob_key(prefix, digest))
            return data if data is not None and len(data) <= MAX_MANIFEST_SIZE and matches(digest, data) else None

        return await work(records, problems, load)

    return await with_bucket_collector(config, on_bucket)


async def with_bucket_collector(config: Config, work: Callable[[Collector], Awaitable[T]]) -> T:
    """``work`` with the collector of the configured bucket (its records, objects, leases), the
    bucket opened before and closed after; ``StoreUnavailable`` when it cannot be used."""
    from proxy.storage.s3.bucket import Bucket
    from proxy.storage.s3.collect import Collector
    from proxy.storage.s3.lease import Leases

    if missing := s3_client_missing():
        raise StoreUnavailable(missing)
    bucket = Bucket(config.store.s3, config.limits)
    await bucket.open()
    try:
        return await work(Collector(bucket, Leases(bucket)))
    finally:
        await bucket.close()
