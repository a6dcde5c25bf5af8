"""Tag records shared through the bucket, so every replica answers a tag the same way.

Each replica keeps its own SQLite tag index as before (fast, and it answers while the bucket
is unreachable); with the S3 store, records are also written to
``<prefix>tags/<upstream>/<repo>/_tags/<tag>/<host>.json`` and read from there when the local
record is missing or no longer fresh.  The bucket was chosen over another engine (a database,
Redis) because the operator already runs it for the blobs, and a record is tiny, written once
per tag per TTL, and read at most once per TTL per replica: no second stateful service for that.
Last writer wins, which is right for records that only ever move forward in ``checked_at``.

A cold (or stale) tag is asked of the upstream by one replica at a time (``turn``): the one that
gets the tag's lease asks, the others wait for the record it keeps, so 30 clients of one new
tag on 3 replicas cost one upstream request.  The warm path (a fresh record) never looks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Callable

import structlog

from proxy.errors import StoreUnavailable
from proxy.oci import jsondoc
from proxy.storage.records import TagRecord
from proxy.storage.s3.bucket import Bucket
from proxy.storage.s3.lease import Lease, Leases, next_poll

log = structlog.get_logger("platproxy.sharedtags")


def record_key(prefix: str, upstream: str, repo: str, tag: str, host: str) -> str:
    host_part = hashlib.sha256(host.encode()).hexdigest()[:16]
    return f"{prefix}tags/{upstream}/{repo}/_tags/{tag}/{host_part}.json"


def encode(record: TagRecord) -> bytes:
    return json.dumps(dataclasses.asdict(record), sort_keys=True).encode()


def decode(data: bytes) -> TagRecord | None:
    """``None`` for anything that is not a record with exactly our fields (ignored, never trusted)."""
    try:
        doc = jsondoc.loads(data)
        record = TagRecord(**doc)
    except (ValueError, TypeError):
        return None
    text_fields = ("upstream", "repo", "tag", "host", "digest", "media_type", "upstream_digest", "platform")
    if not all(isinstance(getattr(record, f), str) for f in text_fields):
        return None
    if not all(isinstance(getattr(record, f), int | float) for f in ("fetched_at", "checked_at")):
        return None
    return record


def newer(local: TagRecord | None, shared: TagRecord | None) -> TagRecord | None:
    """The record checked most recently (another replica may have revalidated the tag)."""
    if local is None or (shared is not None and shared.checked_at > local.checked_at):
        return shared
    return local


class SharedTags:
    def __init__(self, store: Bucket, leases: Leases) -> None:
        self.store = store
        self.leases = leases

    def _key(self, upstream: str, repo: str, tag: str, host: str) -> str:
        return record_key(self.store.config.prefix, upstream, repo, tag, host)

    async def get(self, upstream: str, repo: str, tag: str, host: str) -> TagRecord | None:
        """Best effort: an unreachable bucket means "no shared record", never a failed pull."""
        key = self._key(upstream, repo, tag, host)
        try:
            data = await self.store.read(key)
            if data is None:
                return None
        except StoreUnavailable as exc:
            log.warning("cannot read a shared tag record", key=key, error=str(exc))
            return None
        record = decode(data)
        if record is None or (record.upstream, record.repo, record.tag, record.host) != (upstream, repo, tag, host):
            log.warning("ignoring a malformed shared tag record", key=key)
            return None
        return record

    async def put(self, record: TagRecord) -> None:
        """Best effort: the local index already has the record; other replicas will ask upstream."""
        key = self._key(record.upstream, record.repo, record.tag, record.host)
        try:
            await self.store.call("put_object", Key=key, Body=encode(record), ContentType="application/json")
        except StoreUnavailable as exc:
            log.warning("cannot share a tag record", key=key, error=str(exc))

    async def turn(
        self, upstream: str, repo: str, tag: str, host: str, usable: Callable[[TagRecord], bool]
    ) -> tuple[Lease | None, TagRecord | None]:
        """Wait for this replica's turn to ask the upstream for a tag.

        ``(lease, None)``: ask now, holding the tag's lease (release it when the record is kept);
        ``(None, record)``: another replica kept a ``usable`` record meanwhile, answer with it;
        ``(None, None)``: the bucket cannot tell, ask anyway (a lease is best effort, like records).
        """
        key = self._key(upstream, repo, tag, host)
        pause = 0.0
        while True:
            try:
                lease = await self.leases.acquire_tag(key)
            except StoreUnavailable as exc:
                log.warning("cannot take a tag lease", key=key, error=str(exc))
                return None, None
            found = await self.get(upstream, repo, tag, host)  # the previous holder's, perhaps
            if found is not None and usable(found):
                if lease is not None:
                    await lease.release(stored=True)
                return None, found
            if lease is not None:
                return lease, None
            pause = next_poll(pause, self.store.config.poll_interval)
            await asyncio.sleep(pause)
