"""The shared store: content-addressed objects in an S3 bucket that every replica uses.

Keys: ``<prefix>blobs/<algorithm>/<hex>`` for blobs and manifests alike (a manifest's media type
is the object's ``Content-Type``), ``<prefix>leases/<digest>`` for fills in progress
(``lease``) and ``<prefix>tags/...`` for tag records (``proxy.storage.sharedtags``).

Fills are staged in the local temporary folder exactly as for the file store (hashing,
single-flight and streaming to this replica's clients are the same code); ``commit`` then
uploads the verified file, in one PUT or as a multipart upload read from that file.  Nothing
under a digest's key is ever partial: a multipart upload is invisible until completed, and
it is only started after the digest matched.  This was chosen over "upload to a staging key,
then server-side copy": the copy moves every byte a second time inside the store, and a
crashed replica's staging objects would need a sweeper; an unfinished multipart upload costs
nothing visible and a collection (``proxy.storage.s3.collect``) aborts it after a day.

Small content read back (manifests, configs) is hashed again and kept in a bounded in-memory
map: content-addressed bytes that matched their digest can be served from memory safely,
which also answers manifest pulls by digest while the store is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import structlog

from proxy.config import LimitsConfig, S3Config
from proxy.errors import DigestMismatch, StoreUnavailable
from proxy.oci.digests import matches
from proxy.oci.names import check_digest
from proxy.sizes import CHUNK, MAX_CONFIG_SIZE, MiB
from proxy.storage.base import FetchFromUpstream, LocalFile, Redirect, clear_staging
from proxy.storage.s3.bucket import Bucket, blob_key
from proxy.storage.s3.collect import Collector
from proxy.storage.s3.lease import Lease, Leases, next_poll
from proxy.storage.s3.peers import Peers
from proxy.storage.s3.pulls import PullTimes
from proxy.storage.s3.upload import UPLOADS_AT_ONCE, Upload
from proxy.storage.staging import BlobWriter, Fill

log = structlog.get_logger("platproxy.s3store")

MEMO_BYTES = 32 * MiB
KNOWN_SIZES = 65536
"""Sizes of objects seen in the bucket, kept so a cached blob costs one GET, not a HEAD and a GET
(content-addressed objects never change; one removed behind our back is forgotten on its GET)."""


class S3Store:
    shared = True

    def __init__(self, config: S3Config, limits: LimitsConfig, tmp: Path) -> None:
        self.config = config
        self.tmp = tmp
        clear_staging(tmp)
        self.bucket = Bucket(config, limits)
        self.leases = Leases(self.bucket, config.advertised_peer())
        self.peers = (
            Peers(self.leases.peer, config.peer_secret, limits, config.lease_ttl) if config.peer_listen else None
        )
        self._memo: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._memo_bytes = 0
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._uploads = asyncio.Semaphore(UPLOADS_AT_ONCE)
        self._following: dict[BlobWriter, tuple[Upload, asyncio.Task[None]]] = {}
        self.pulls = PullTimes(self.bucket, self.leases.owner)
        self._collecting: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.bucket.open()
        try:
            await self.leases.detect()
        except Exception as exc:  # the bucket is not usable yet: releases take the swap, always safe
            log.info("store capabilities not detected; leases are released by swap", error=str(exc))
        self.pulls.start()
        if self.config.gc_interval:
            self._collecting = asyncio.create_task(self._collect_every(self.config.gc_interval))

    async def close(self) -> None:
        if self._collecting is not None:
            self._collecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collecting
        await self.pulls.stop()
        if self.peers is not None:
            await self.peers.close()
        await self.bucket.close()

    async def _collect_every(self, period: float) -> None:
        """Offer to collect the bucket every ``period`` (give or take 10%, so replicas started
        together do not all ask at once); the one that gets the gc lease collects."""
        while True:
            await asyncio.sleep(period * random.uniform(0.9, 1.1))
            try:
                await self.collect_once()
            except Exception as exc:  # the next period tries again; serving is unaffected
                log.warning("bucket collection failed", error=str(exc) or type(exc).__name__)

    async def collect_once(self) -> bool:
        """One collection by this replica, unless another is collecting or one collected less
        than ``gc_interval`` ago (so N replicas collect about once per interval, not N times);
        True when it collected."""
        collector = Collector(self.bucket, self.leases)
        if time.time() - await collector.last_collected() < self.config.gc_interval * 0.9:
            return False
        lease = await self.leases.acquire_collection()
        if lease is None:
            return False
        try:
            await self.pulls.report()  # this replica's own recent pulls count in this collection
            c = self.config
            await collector.collect(c.max_size, c.max_age, c.abort_uploads_after)
        finally:
            await lease.release(stored=True)
        return True

    async def ping(self) -> str:
        return await self.bucket.ping()

    def describe(self) -> dict[str, Any] | None:
        return {"backend": "s3", "bucket": self.config.bucket}

    # -- content ----------------------------------------------------------------------------------

    def key(self, digest: str) -> str:
        return blob_key(self.config.prefix, check_digest(digest))

    async def stat(self, digest: str) -> int | None:
        if digest in self._memo:
            return len(self._memo[digest][0])
        if digest in self._sizes:
            self._sizes.move_to_end(digest)
            return self._sizes[digest]
        head = await self.bucket.call_if_exists("head_object", Key=self.key(digest))
        if head is None:
            return None
        self._know_size(digest, int(head["ContentLength"]))
        return int(head["ContentLength"])

    def _know_size(self, digest: str, size: int) -> None:
        self._sizes[digest] = size
        if len(self._sizes) > KNOWN_SIZES:
            self._sizes.popitem(last=False)

    async def get(self, digest: str) -> bytes | None:
        found = await self._get_small(digest)
        if found is not None:
            self.pulls.note(digest)
        return found[0] if found else None

    async def media_type(self, digest: str) -> str | None:
        found = await self._get_small(digest)
        return found[1] if found and found[1] != "application/octet-stream" else None

    async def _get_small(self, digest: str) -> tuple[bytes, str] | None:
        if digest in self._memo:
            self._memo.move_to_end(digest)
            return self._memo[digest]
        resp = await self.bucket.call_if_exists("get_object", Key=self.key(digest))
        if resp is None:
            return None
        if int(resp.get("ContentLength", 0)) > MAX_CONFIG_SIZE:
            resp["Body"].close()
            return None
        async with resp["Body"] as body:
            data = await body.read()
        found = (data, str(resp.get("ContentType", "")).split(";")[0].strip())
        if not matches(digest, data, found[1]):
            log.error("object in the store does not match its digest", key=self.key(digest))
            return None
        self._remember(digest, found)
        return found

    def _remember(self, digest: str, found: tuple[bytes, str]) -> None:
        if len(found[0]) > MEMO_BYTES // 8:
            return
        self._memo[digest] = found
        self._memo_bytes += len(found[0])
        while self._memo_bytes > MEMO_BYTES:
            _, (old, _) = self._memo.popitem(last=False)
            self._memo_bytes -= len(old)

    async def save(self, digest: str, data: bytes, media_type: str = "") -> None:
        if not matches(check_digest(digest), data, media_type):
            raise DigestMismatch(f"content does not match {digest}")
        media_type = media_type or "application/octet-stream"
        await self.bucket.call("put_object", Key=self.key(digest), Body=data, ContentType=media_type)
        self._remember(digest, (data, media_type))

    def writer(self, digest: str) -> BlobWriter:
        return BlobWriter(check_digest(digest), self.tmp, None)

    async def commit(self, writer: BlobWriter) -> None:
        """Upload the verified staging file under its digest, then drop the local copy."""
        followed = self._following.pop(writer, None)
        upload = followed[0] if followed else self._upload(writer)
        try:
            if followed:
                await followed[1]  # it stops at the verdict; a failed part fails the commit
            await upload.finish(writer.written)
            self._know_size(writer.digest, writer.written)
            self.pulls.note(writer.digest)
        finally:
            await upload.abort()
            writer.abort()

    def _upload(self, writer: BlobWriter) -> Upload:
        return Upload(self.bucket, self.key(writer.digest), writer.tmp_path, self._uploads)

    def follow(self, fill: Fill) -> None:
        """Upload ``fill`` part by part while it is being filled (the lease holder does this)."""
        upload = self._upload(fill.writer)
        self._following[fill.writer] = (upload, asyncio.create_task(self._follow(fill, upload)))

        async def stop() -> None:  # the fill failed before its commit: drop the unfinished upload
            followed = self._following.pop(fill.writer, None)
            if followed is not None:
                followed[1].cancel()
                with contextlib.suppress(BaseException):
                    await followed[1]
                await followed[0].abort()

        fill.on_done.append(stop)

    async def _follow(self, fill: Fill, upload: Upload) -> None:
        while not (fill.ok or fill.finished):
            if fill.written - upload.sent >= upload.part:
                await upload.send_full_parts(fill.written)
            else:
                await fill.wait_beyond(upload.sent + upload.part - 1)

    def touch(self, digest: str) -> None:
        self.pulls.note(digest)  # reported in batches: a collection keeps what was pulled last

    async def locate(self, digest: str) -> LocalFile | Redirect | None:
        """A presigned URL with ``redirect = true``; else ``None``: streamed from the bucket."""
        if not self.config.redirect:
            return None
        try:
            return Redirect(await self.bucket.presign(self.key(digest)))
        except Exception as exc:  # signing is local; a failure here is a configuration problem
            raise StoreUnavailable(f"cannot presign {digest}: {exc}") from None

    async def read_range(self, digest: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Bytes ``start`` .. ``end`` (exclusive) of a stored blob, streamed from the bucket.

        ``FileNotFoundError`` when the object is gone (a collection removed it meanwhile).
        """
        if end <= start:
            return
        resp = await self.bucket.call_if_exists("get_object", Key=self.key(digest), Range=f"bytes={start}-{end - 1}")
        if resp is None:
            self._sizes.pop(digest, None)
            raise FileNotFoundError(f"{digest} is no longer in the store")
        async with resp["Body"] as body:
            while True:
                chunk = await body.read(CHUNK)
                if not chunk:
                    return
                yield chunk

    # -- fills ------------------------------------------------------------------------------------

    async def fill(self, fill: Fill, fetch: FetchFromUpstream) -> None:
        """One upstream fetch per blob across replicas: the lease holder fetches, the others wait.

        A waiting replica streams the bytes from the holder as they arrive when the holder has a
        peer listener (``proxy.storage.s3.peers``); otherwise, or when the holder stops, it waits
        for the blob in the bucket.  Either way the bytes go into its own staging file, verified
        like any fill, and its clients are served from there.  A lease left by a dead replica
        expires and is taken over; what a fill already has (from a holder that died mid-stream)
        stays, and the new fetch skips that many bytes of the upstream's body.
        """
        pause = 0.0
        while True:
            size = await self.stat(fill.digest)
            if size is not None:
                fill.size = size
                fill.already_stored = True
                fill.headers_ready.set()
                self.pulls.note(fill.digest)
                async for chunk in self.read_range(fill.digest, fill.written, size):
                    fill.writer.write(chunk)
                    fill.advance(len(chunk))
                return
            lease, holder = await self.leases.acquire_or_holder(fill.digest)
            peer = holder.peer if holder is not None else ""
            if self.peers is not None and peer not in ("", self.peers.url) and await self.peers.stream(peer, fill):
                fill.already_stored = True  # the holder stores it; this replica only serves it
                return
            if lease is not None:

                async def release(lease: Lease = lease) -> None:
                    await lease.release(stored=await self.stat(fill.digest) is not None)

                fill.on_done.append(release)
                if await self.stat(fill.digest) is None:  # not finished by the previous holder meanwhile
                    self.follow(fill)  # upload parts while the download goes on
                    await fetch(fill)
                    return
                continue
            pause = next_poll(pause, self.config.poll_interval)
            await asyncio.sleep(pause)
