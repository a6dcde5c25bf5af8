"""Collecting the shared bucket: listing it, and removing what ``retention`` decided.

One collection at a time across the tier: ``platproxy cache gc`` and the replica elected by
``gc_interval`` both take the lease ``<prefix>leases/gc`` first (the fill leases' conditional
PUT), so two collections never delete by two listings.  A collection lists the content, the
tag records, the pull-time batches, the fill leases and the unfinished multipart uploads; it
removes, in this order, the tag records that need anything going (so no replica reads a record
whose content is gone), the content, and the uploads abandoned for longer than
``abort_uploads_after`` (a fill in progress holds a lease on its digest: its upload is kept);
then it folds the pull batches into one merged batch.  Nothing under a digest is ever partial
(uploads complete only after the digest matched), so a collection cannot leave a partial
object; a replica that finds content gone fetches it again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from proxy.oci import jsondoc
from proxy.oci.descriptors import references
from proxy.sizes import MAX_CONFIG_SIZE
from proxy.storage.records import ContentEntry, TagRecord
from proxy.storage.s3.bucket import Bucket, blob_key
from proxy.storage.s3.lease import Leases
from proxy.storage.s3.pulls import MERGED
from proxy.storage.s3.retention import collection, is_digest, last_used, merge_pulls, parse_pulls, unneeded
from proxy.storage.sharedtags import decode

log = structlog.get_logger("platproxy.s3gc")

DELETE_BATCH = 1000
"""S3's limit of keys per DeleteObjects request."""
READS_AT_ONCE = 32
REFERENCES_BATCH = 1000
"""Manifests read (and parsed) per batch while listing what tag records need."""
LAST = "collected.json"
"""``<prefix>collected.json``: the last collection's time and figures."""


@dataclass(frozen=True)
class Upload:
    key: str
    upload_id: str
    initiated: float
    digest: str


@dataclass
class Listing:
    """The bucket as one collection sees it."""

    objects: dict[str, tuple[int, float]] = field(default_factory=dict)
    """digest -> (size, uploaded)"""
    records: dict[str, TagRecord] = field(default_factory=dict)
    """shared record key -> record"""
    needs: dict[str, set[str]] = field(default_factory=dict)
    """shared record key -> every digest the record needs"""
    pulls: dict[str, float] = field(default_factory=dict)
    batches: list[str] = field(default_factory=list)
    leased: set[str] = field(default_factory=set)
    uploads: list[Upload] = field(default_factory=list)
    collected: float = 0.0
    """When the bucket was last collected (0: never)."""

    @property
    def total(self) -> int:
        return sum(size for size, _ in self.objects.values())


@dataclass
class Collection:
    """What a collection removed (or, dry, would remove)."""

    dry_run: bool
    budget: int
    max_age: float
    before: int
    content: list[ContentEntry]
    records: list[TagRecord]
    uploads: list[Upload]
    batches_merged: int
    seconds: float = 0.0

    @property
    def freed(self) -> int:
        return sum(e.size for e in self.content)

    @property
    def after(self) -> int:
        return self.before - self.freed

    def summary(self) -> dict[str, Any]:
        """``to_json`` without the lists (for the log and ``collected.json``)."""
        return {k: v for k, v in self.to_json().items() if k not in ("removed", "tags_dropped")}

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run, "budget_bytes": self.budget, "max_age_s": self.max_age,
            "bytes_before": self.before, "bytes_after": self.after, "objects_removed": len(self.content),
            "bytes_removed": self.freed, "removed": [e.digest for e in self.content],
            "tags_dropped": [r.image for r in self.records], "uploads_aborted": len(self.uploads),
            "pull_batches_merged": self.batches_merged, "seconds": round(self.seconds, 3),
        }  # fmt: skip


class Collector:
    def __init__(self, bucket: Bucket, leases: Leases) -> None:
        self.bucket = bucket
        self.leases = leases
        self.prefix = bucket.config.prefix

    # -- reading the bucket -----------------------------------------------------------------------

    async def keys(self, under: str) -> AsyncIterator[dict[str, Any]]:
        """Every object under ``<prefix><under>``, page by page."""
        token: dict[str, str] = {}
        while True:
            page = await self.bucket.call("list_objects_v2", Prefix=self.prefix + under, **token)
            for item in page.get("Contents") or []:
                yield item
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    async def read_all(self, keys: list[str]) -> list[bytes | None]:
        """Many small objects (tag records, pull batches), ``READS_AT_ONCE`` requests at a time."""
        gate = asyncio.Semaphore(READS_AT_ONCE)

        async def one(key: str) -> bytes | None:
            async with gate:
                return await self.bucket.read(key)

        return list(await asyncio.gather(*(one(k) for k in keys)))

    def digest_of(self, key: str) -> str:
        """``<prefix>blobs/<algorithm>/<hex>`` -> ``<algorithm>:<hex>`` (empty for any other key)."""
        algorithm, _, encoded = key.removeprefix(self.prefix + "blobs/").partition("/")
        digest = f"{algorithm}:{encoded}"
        return digest if is_digest(digest) else ""

    async def look(self) -> Listing:
        found = Listing()
        async for item in self.keys("blobs/"):
            if digest := self.digest_of(item["Key"]):
                found.objects[digest] = (int(item["Size"]), item["LastModified"].timestamp())
        record_keys = [item["Key"] async for item in self.keys("tags/")]
        for key, data in zip(record_keys, await self.read_all(record_keys), strict=True):
            record = decode(data) if data is not None else None
            if record is not None:  # anything else is left alone, as replicas ignore it
                found.records[key] = record
        manifests = await self._references({d for r in found.records.values() for d in (r.digest, r.index_digest) if d},
                                           found.objects)  # fmt: skip
        for key, record in found.records.items():
            found.needs[key] = {d for d in (record.digest, record.index_digest) if d}
            for digest in list(found.needs[key]):
                found.needs[key] |= manifests.get(digest, set())
        batch_keys = [item["Key"] async for item in self.keys("pulls/")]
        found.pulls = merge_pulls(parse_pulls(data or b"") for data in await self.read_all(batch_keys))
        found.batches = [key for key in batch_keys if not key.endswith("/" + MERGED)]
        async for item in self.keys("leases/"):
            if is_digest(name := item["Key"].removeprefix(self.prefix + "leases/")):
                found.leased.add(name)
        found.uploads = [u async for u in self._uploads()]
        found.collected = await self.last_collected()
        return found

    async def _references(self, digests: set[str], objects: dict[str, tuple[int, float]]) -> dict[str, set[str]]:
        """What each stored manifest of ``digests`` refers to, read ``READS_AT_ONCE`` at a time
        (one after another, a bucket of 33k tags took minutes) and parsed a batch at a time (the
        bodies of a whole bucket are never held at once)."""
        wanted = sorted(d for d in digests if d in objects and objects[d][0] <= MAX_CONFIG_SIZE)
        found: dict[str, set[str]] = {}
        for start in range(0, len(wanted), REFERENCES_BATCH):
            batch = wanted[start : start + REFERENCES_BATCH]
            bodies = await self.read_all([blob_key(self.prefix, d) for d in batch])
            found.update((d, references(b)) for d, b in zip(batch, bodies, strict=True) if b is not None)
        return found

    async def _uploads(self) -> AsyncIterator[Upload]:
        markers: dict[str, str] = {}
        while True:
            page = await self.bucket.call("list_multipart_uploads", Prefix=self.prefix + "blobs/", **markers)
            for u in page.get("Uploads") or []:
                yield Upload(u["Key"], u["UploadId"], u["Initiated"].timestamp(), self.digest_of(u["Key"]))
            if not page.get("IsTruncated"):
                return
            markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}

    # -- collecting -------------------------------------------------------------------------------

    async def collect(self, budget: int, max_age: float, abort_after: float, dry_run: bool = False,
                      clock: Callable[[], float] = time.time) -> Collection:  # fmt: skip
        """Bring the bucket within ``budget`` bytes and ``max_age`` seconds of disuse (0: no
        limit), oldest use first; abort uploads older than ``abort_after``.  The caller holds
        the gc lease."""
        started = time.monotonic()
        found = await self.look()
        now = clock()
        entries = last_used(found.objects, found.pulls, found.needs)
        victims, dropped = collection(entries, found.needs, budget, max_age, now, found.leased)
        gone = {v.digest for v in victims}
        abandoned = [u for u in found.uploads if now - u.initiated > abort_after and u.digest not in found.leased]
        result = Collection(dry_run, budget, max_age, found.total, victims, [found.records[k] for k in dropped],
                            abandoned, len(found.batches))  # fmt: skip
        if not dry_run:
            await self.delete(dropped)
            await self.delete([blob_key(self.prefix, d) for d in sorted(gone)])
            for upload in abandoned:
                await self.bucket.call_if_exists("abort_multipart_upload", Key=upload.key, UploadId=upload.upload_id)
            await self._fold_pulls(found, gone)
        result.seconds = time.monotonic() - started
        if not dry_run:  # when, and what: the elected replicas pace themselves by it
            summary = json.dumps({"at": clock(), **result.summary()}).encode()
            await self.bucket.call("put_object", Key=self.prefix + LAST, Body=summary, ContentType="application/json")
        log.info("bucket collected" if not dry_run else "bucket collection planned (dry run)", **result.summary())
        return result

    async def last_collected(self) -> float:
        """When the bucket was last collected (0: never, or unknown)."""
        data = await self.bucket.read(self.prefix + LAST)
        try:
            when = jsondoc.loads(data or b"{}").get("at", 0.0)
        except (ValueError, AttributeError):
            return 0.0
        return float(when) if isinstance(when, int | float) else 0.0

    async def remove(
        self, wanted: Callable[[TagRecord], bool], dry_run: bool = False
    ) -> tuple[list[TagRecord], set[str], int]:
        """Forget the tag records ``wanted`` selects and the content no other record needs
        (``cache rm``); returns the records, the digests and their bytes.  Content a fill holds a
        lease on stays."""
        found = await self.look()
        doomed = [k for k, r in found.records.items() if wanted(r)]
        gone = {d for d in unneeded(found.needs, doomed) if d in found.objects} - found.leased
        if not dry_run:
            await self.delete(doomed)
            await self.delete([blob_key(self.prefix, d) for d in sorted(gone)])
        return [found.records[k] for k in doomed], gone, sum(found.objects[d][0] for d in gone)

    async def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            answer = await self.bucket.call("delete_objects", Delete={"Objects": [{"Key": k} for k in batch],
                                                                      "Quiet": True})  # fmt: skip
            errors = answer.get("Errors") or []
            if errors:
                log.warning("some objects were not deleted", count=len(errors), first=errors[0])

    async def _fold_pulls(self, found: Listing, gone: set[str]) -> None:
        """Keep one merged batch of the pull times of what is still stored, then drop the batches
        merged into it (a failure in between leaves batches that merge again harmlessly)."""
        kept = {d: t for d, t in found.pulls.items() if d in found.objects and d not in gone}
        await self.bucket.call("put_object", Key=f"{self.prefix}pulls/{MERGED}", Body=json.dumps(kept).encode(),
                               ContentType="application/json")  # fmt: skip
        await self.delete(found.batches)
