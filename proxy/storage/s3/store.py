"""The shared store: content-addressed objects in an S3 bucket that every replica uses.

Keys: ``<prefix>blobs/<algorithm>/<hex>`` for blobs and manifests alike (a manifest's media type
is the object's ``Content-Type``), ``<prefix>leases/<digest>`` for fills in progress
(``proxy.storage.s3.lease``) and ``<prefix>tags/...`` for tag records (``proxy.storage.sharedtags``).

Fills are staged in the local temporary folder exactly as for the file store (hashing,
single-flight and streaming to this replica's clients are the same code); ``commit`` then
uploads the verified file, in one PUT or as a multipart upload read from that file.  Nothing
under a digest's key is ever partial: a multipart upload is invisible until completed, and
it is only started after the digest matched.  This was chosen over "upload to a staging key,
then server-side copy": the copy moves every byte a second time inside the store, and a
crashed replica's staging objects would need a sweeper; an unfinished multipart upload costs
nothing visible and a bucket lifecycle rule (AbortIncompleteMultipartUpload) reclaims it.

Small content read back (manifests, configs) is hashed again and kept in a bounded in-memory
map: content-addressed bytes that matched their digest can be served from memory safely,
which also answers manifest pulls by digest while the store is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from proxy.config import LimitsConfig, S3Config
from proxy.errors import DigestMismatch, StoreUnavailable
from proxy.oci.names import check_digest
from proxy.storage.files import BlobWriter, clear_staging
from proxy.storage.s3.lease import LeaseOutcome, lease_body, parse_lease, still_held
from proxy.storage.s3.upload import UPLOADS_AT_ONCE, Upload

if TYPE_CHECKING:
    from proxy.pull.fills import Fill

log = structlog.get_logger("platproxy.s3store")

SMALL_LIMIT = 16 * 2**20
"""Largest object ``get`` reads into memory (configs and manifests are far smaller)."""
MEMO_BYTES = 32 * 2**20
KNOWN_SIZES = 65536
"""Sizes of objects seen in the bucket, kept so a cached blob costs one GET, not a HEAD and a GET
(content-addressed objects never change; one removed behind our back is forgotten on its GET)."""
CHUNK = 256 * 1024
DOWN_WINDOW = 2.0
"""After the bucket was found unreachable, fail at once for this long instead of each request
waiting through connection retries of its own (a client gets its 503 promptly)."""


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _status(exc: Exception) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_missing(exc: Exception) -> bool:
    return _status(exc) == 404 or _code(exc) in ("404", "NoSuchKey", "NotFound")


def _precondition(exc: Exception) -> bool:
    """412: the conditional write lost; 409: another conditional write to the key is in flight."""
    return _status(exc) in (409, 412) or _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict")


class Lease:
    """A lease this replica holds; renewed in the background until released."""

    def __init__(self, store: S3Store, key: str, etag: str) -> None:
        self.store = store
        self.key = key
        self.etag = etag
        self._renewer = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        ttl = self.store.config.lease_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            etag = await self.store.swap(self.key, lease_body(self.store.owner, time.time(), ttl), self.etag)
            if etag is None:
                self.store.count_lease(LeaseOutcome.LOST)
                log.warning("lease lost to another replica", key=self.key)
                return
            self.etag = etag

    async def release(self) -> None:
        self._renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewer
        await self.store.call("delete_object", Key=self.key)


class S3Store:
    shared = True

    def __init__(self, config: S3Config, limits: LimitsConfig, tmp: Path) -> None:
        self.config = config
        self.limits = limits
        self.tmp = tmp
        clear_staging(tmp)
        self.owner = f"{os.uname().nodename}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.on_added: Callable[[str, int], None] | None = None
        self.on_used: Callable[[str], None] | None = None
        self.on_lease: Callable[[str], None] | None = None
        self.on_call: Callable[[str, str], None] | None = None
        """Called with (operation, outcome) for every S3 request (the metrics listen)."""
        self._memo: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._memo_bytes = 0
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._down_until = 0.0
        self._down_reason = ""
        self._uploads = asyncio.Semaphore(UPLOADS_AT_ONCE)
        self._following: dict[BlobWriter, tuple[Upload, asyncio.Task[None]]] = {}

    # -- connection -------------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            from aiobotocore.session import get_session
            from botocore.config import Config as BotoConfig
        except ImportError:
            raise RuntimeError("the s3 store needs aiobotocore: pip install 'platproxy[s3]'") from None
        c = self.config
        boto = BotoConfig(
            signature_version="s3v4", s3={"addressing_style": c.addressing_style},
            connect_timeout=self.limits.connect_timeout, read_timeout=self.limits.read_timeout,
            retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=64,
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )  # fmt: skip
        kwargs: dict[str, Any] = {"region_name": c.region, "config": boto, "verify": c.verify_tls}
        if c.endpoint:
            kwargs["endpoint_url"] = c.endpoint
        if c.access_key:
            kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"] = c.access_key, c.secret_key
        self._client = await self._stack.enter_async_context(get_session().create_client("s3", **kwargs))
        problem = await self.ping()
        if problem:  # not fatal: the bucket may come back; /readyz says so meanwhile
            log.warning("the store is not usable yet", bucket=c.bucket, error=problem)

    async def close(self) -> None:
        await self._stack.aclose()

    async def call(self, operation: str, **kwargs: Any) -> Any:
        """One S3 request on this bucket; unreachable or refused becomes ``StoreUnavailable``."""
        from botocore.exceptions import BotoCoreError, ClientError

        if time.monotonic() < self._down_until:
            self._count(operation, "unreachable")
            raise StoreUnavailable(f"the store is unreachable ({self._down_reason})")
        try:
            result = await getattr(self._client, operation)(Bucket=self.config.bucket, **kwargs)
        except ClientError as exc:
            outcome = "missing" if is_missing(exc) else "conflict" if _precondition(exc) else "error"
            if _code(exc) == "NoSuchBucket":  # a configuration problem, not a missing object
                outcome = "error"
            self._count(operation, outcome)
            if outcome != "error":
                raise
            raise StoreUnavailable(f"the store answered {_code(exc) or _status(exc)} to {operation}") from None
        except (TimeoutError, BotoCoreError, OSError) as exc:
            self._count(operation, "unreachable")
            self._down_until, self._down_reason = time.monotonic() + DOWN_WINDOW, f"{type(exc).__name__}: {exc}"
            raise StoreUnavailable(f"the store is unreachable: {self._down_reason}") from None
        self._count(operation, "ok")
        return result

    async def call_if_exists(self, operation: str, **kwargs: Any) -> Any | None:
        """``call``, or ``None`` when the object it reads does not exist."""
        try:
            return await self.call(operation, **kwargs)
        except Exception as exc:
            if is_missing(exc):
                return None
            raise

    def _count(self, operation: str, outcome: str) -> None:
        if self.on_call is not None:
            self.on_call(operation, outcome)

    async def ping(self) -> str:
        """Empty when the bucket answers, else the reason."""
        try:
            await self.call("head_bucket")
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return ""

    # -- content ----------------------------------------------------------------------------------

    def key(self, digest: str) -> str:
        algorithm, _, encoded = check_digest(digest).partition(":")
        return f"{self.config.prefix}blobs/{algorithm}/{encoded}"

    async def stat(self, digest: str) -> int | None:
        if digest in self._memo:
            return len(self._memo[digest][0])
        if digest in self._sizes:
            self._sizes.move_to_end(digest)
            return self._sizes[digest]
        head = await self.call_if_exists("head_object", Key=self.key(digest))
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
        return found[0] if found else None

    async def media_type(self, digest: str) -> str | None:
        found = await self._get_small(digest)
        return found[1] if found and found[1] != "application/octet-stream" else None

    async def _get_small(self, digest: str) -> tuple[bytes, str] | None:
        if digest in self._memo:
            self._memo.move_to_end(digest)
            return self._memo[digest]
        resp = await self.call_if_exists("get_object", Key=self.key(digest))
        if resp is None:
            return None
        if int(resp.get("ContentLength", 0)) > SMALL_LIMIT:
            resp["Body"].close()
            return None
        async with resp["Body"] as body:
            data = await body.read()
        algorithm, _, expected = digest.partition(":")
        if hashlib.new(algorithm, data).hexdigest() != expected:
            log.error("object in the store does not match its digest", key=self.key(digest))
            return None
        found = (data, str(resp.get("ContentType", "")).split(";")[0].strip())
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
        algorithm, _, expected = check_digest(digest).partition(":")
        if hashlib.new(algorithm, data).hexdigest() != expected:
            raise DigestMismatch(f"content does not match {digest}")
        media_type = media_type or "application/octet-stream"
        await self.call("put_object", Key=self.key(digest), Body=data, ContentType=media_type)
        self._remember(digest, (data, media_type))

    def writer(self, digest: str) -> BlobWriter:
        return BlobWriter(check_digest(digest), self.tmp, None)

    async def commit(self, writer: BlobWriter) -> None:
        """Upload the verified staging file under its digest, then drop the local copy."""
        followed = self._following.pop(writer, None)
        upload = followed[0] if followed else Upload(self, self.key(writer.digest), writer.tmp_path, self._uploads)
        try:
            if followed:
                await followed[1]  # it stops at the verdict; a failed part fails the commit
            await upload.finish(writer.written)
            self._know_size(writer.digest, writer.written)
        finally:
            await upload.abort()
            writer.abort()

    def follow(self, fill: Fill) -> None:
        """Upload ``fill`` part by part while it is being filled (the lease holder does this)."""
        upload = Upload(self, self.key(fill.digest), fill.writer.tmp_path, self._uploads)
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
        if self.on_used is not None:
            self.on_used(digest)

    async def open_range(self, digest: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Bytes ``start`` .. ``end`` (exclusive) of a stored blob, streamed from the bucket.

        ``FileNotFoundError`` when the object is gone (a lifecycle rule removed it meanwhile).
        """
        if end <= start:
            return
        resp = await self.call_if_exists("get_object", Key=self.key(digest), Range=f"bytes={start}-{end - 1}")
        if resp is None:
            self._sizes.pop(digest, None)
            raise FileNotFoundError(f"{digest} is no longer in the store")
        async with resp["Body"] as body:
            while True:
                chunk = await body.read(CHUNK)
                if not chunk:
                    return
                yield chunk

    async def presign(self, digest: str) -> str:
        url: str = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.config.bucket, "Key": self.key(digest)},
            ExpiresIn=int(self.config.presign_ttl),
        )  # fmt: skip
        return url

    # -- leases -----------------------------------------------------------------------------------

    def count_lease(self, outcome: LeaseOutcome) -> None:
        if self.on_lease is not None:
            self.on_lease(outcome.value)

    async def acquire(self, digest: str) -> Lease | None:
        """The lease to fill ``digest`` from the upstream, or ``None`` while another replica holds it."""
        key = f"{self.config.prefix}leases/{check_digest(digest)}"
        body = lease_body(self.owner, time.time(), self.config.lease_ttl)
        try:
            made = await self.call("put_object", Key=key, Body=body, IfNoneMatch="*")
            self.count_lease(LeaseOutcome.ACQUIRED)
            return Lease(self, key, str(made["ETag"]))
        except StoreUnavailable:
            raise
        except Exception as exc:
            if not _precondition(exc):
                raise
        resp = await self.call_if_exists("get_object", Key=key)
        if resp is None:  # released in between: the blob is probably there now; look again
            return None
        async with resp["Body"] as stream:
            current = await stream.read()
        if still_held(parse_lease(current), time.time()):
            self.count_lease(LeaseOutcome.HELD)
            return None
        etag = await self.swap(key, body, str(resp["ETag"]))
        if etag is None:
            self.count_lease(LeaseOutcome.HELD)  # another replica took it over first
            return None
        log.warning("took over an expired fill lease", digest=digest, previous=current.decode(errors="replace"))
        self.count_lease(LeaseOutcome.TAKEN_OVER)
        return Lease(self, key, etag)

    async def swap(self, key: str, body: bytes, etag: str) -> str | None:
        """Compare-and-swap on the object's ETag; the new ETag, or ``None`` when it changed.

        Sent unquoted first (Ceph RGW 16 compares If-Match without the quotes) and then quoted
        as RFC 9110 writes it: a value that does not match either way cannot succeed wrongly.
        """
        for value in (etag.strip('"'), f'"{etag.strip(chr(34))}"'):
            try:
                made = await self.call("put_object", Key=key, Body=body, IfMatch=value)
                return str(made["ETag"])
            except StoreUnavailable:
                raise
            except Exception as exc:
                if not _precondition(exc):
                    raise
        return None
