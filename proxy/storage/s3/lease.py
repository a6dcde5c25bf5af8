"""Leases in a shared bucket: which replica fetches a cold blob (or asks for a cold tag) upstream.

A lease is a small object ``<prefix>leases/<digest>`` (a tag's: ``<prefix>leases/tags/...``,
beside the path of its shared record) holding its owner and expiry.  It is
created with ``PUT If-None-Match: *`` (exactly one replica wins), renewed and taken over with
``PUT If-Match: <etag>`` (a compare-and-swap: of several replicas that find the same expired
lease, one wins), and released when the fill is over.  Expiry is what bounds a dead owner:
after ``lease_ttl`` without renewal any replica may take the fill over.

Releasing is conditional on the holder's own ETag, so a holder that stalled past its TTL (and
whose lease another replica took over) cannot remove its successor's lease: a ``DELETE`` with
``If-Match`` where the store honours it, else a compare-and-swap to an already expired lease
(a marker the next fill of the digest takes over like any expired lease).  Which of the two a
store supports is found at start (``detect``: a ``DELETE`` with a wrong ``If-Match`` on a probe
object must be refused) and logged; a store that ignores the condition gets the swap.  Expiry times
are wall-clock times written by the owner, so replicas' clocks must agree to well within
``lease_ttl`` (NTP does that).

The decisions (is this lease still held?) are pure functions; ``Leases`` does the I/O on the
bucket, and ``proxy.storage.s3.store`` asks it before fetching a cold blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog

from proxy.errors import StoreUnavailable
from proxy.oci import jsondoc
from proxy.oci.names import check_digest
from proxy.storage.s3.bucket import Bucket, is_missing, lost_race

log = structlog.get_logger("platproxy.s3")


class LeaseOutcome(StrEnum):
    """What a replica that wanted to fill a blob got (the ``platproxy_lease_total`` labels)."""

    ACQUIRED = "acquired"
    """No lease existed: this replica fetches from the upstream."""
    TAKEN_OVER = "taken_over"
    """The owner's lease had expired (it died or stalled): this replica fetches now."""
    HELD = "held"
    """Another replica is fetching: wait for its blob."""
    LOST = "lost"
    """A renewal failed because another replica took the lease over."""


@dataclass(frozen=True)
class LeaseBody:
    owner: str
    expires: float
    peer: str = ""
    """The holder's peer listener (``http://host:port``): waiting replicas stream from it."""


def lease_body(owner: str, now: float, ttl: float, peer: str = "") -> bytes:
    doc: dict[str, str | float] = {"owner": owner, "expires": now + ttl}
    if peer:
        doc["peer"] = peer
    return json.dumps(doc).encode()


def parse_lease(data: bytes) -> LeaseBody | None:
    """``None`` for anything that is not a lease we wrote (treated as expired: it holds nothing)."""
    try:
        doc = jsondoc.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    owner, expires = doc.get("owner"), doc.get("expires")
    if not isinstance(owner, str) or not isinstance(expires, int | float) or isinstance(expires, bool):
        return None
    peer = doc.get("peer")
    return LeaseBody(owner, float(expires), peer if isinstance(peer, str) and peer.startswith("http://") else "")


def still_held(lease: LeaseBody | None, now: float) -> bool:
    """Does the lease keep other replicas away right now?"""
    return lease is not None and lease.expires > now


def next_poll(previous: float, base: float) -> float:
    """Back off while waiting on another replica's fill: base, 2x, 4x, up to 8x ``base``."""
    return min(max(previous * 2, base), base * 8)


class Lease:
    """A lease this replica holds; renewed in the background until released."""

    def __init__(self, leases: Leases, key: str, etag: str) -> None:
        self.leases = leases
        self.key = key
        self.etag = etag
        self._renewer = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        ttl = self.leases.bucket.config.lease_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            body = lease_body(self.leases.owner, time.time(), ttl, self.leases.peer)
            etag = await self.leases.swap(self.key, body, self.etag)
            if etag is None:
                self.leases.count(LeaseOutcome.LOST)
                log.warning("lease lost to another replica", key=self.key)
                return
            self.etag = etag

    async def release(self, stored: bool = False) -> None:
        """``stored``: the blob is in the bucket now (no replica will fetch it again)."""
        self._renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewer
        await self.leases.drop(self.key, self.etag, stored)


class Leases:
    """This replica's side of the fill leases in one bucket."""

    def __init__(self, bucket: Bucket, peer: str = "") -> None:
        self.bucket = bucket
        self.peer = peer
        """This replica's peer listener, written into its leases (empty: none)."""
        self.owner = f"{os.uname().nodename}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.on_lease: Callable[[str], None] | None = None
        """Called with each ``LeaseOutcome`` (the metrics listen)."""
        self.conditional_delete = False
        """The store refuses a ``DELETE`` whose ``If-Match`` does not match (``detect``)."""

    async def detect(self) -> None:
        """Does the store honour ``If-Match`` on ``DELETE``?  Tried on a probe object of our own:
        a delete with a wrong ETag must be refused (and leave the object)."""
        key = f"{self.bucket.config.prefix}leases/.probe-{uuid.uuid4().hex}"
        await self.bucket.call("put_object", Key=key, Body=b"probe")
        refused = False
        try:
            await self.bucket.call("delete_object", Key=key, IfMatch='"00000000000000000000000000000000"')
        except StoreUnavailable:
            pass
        except Exception as exc:
            refused = lost_race(exc)
        still_there = await self.bucket.call_if_exists("head_object", Key=key) is not None
        self.conditional_delete = refused and still_there
        with contextlib.suppress(Exception):
            await self.bucket.call("delete_object", Key=key)
        how = "DELETE If-Match" if self.conditional_delete else "swap to an expired lease"
        log.info("store capabilities", conditional_delete=self.conditional_delete, lease_release=how)

    async def drop(self, key: str, etag: str, stored: bool = False) -> None:
        """Release a lease only if it is still the one with ``etag`` (this replica's).  After a
        swap to an expired marker, the marker is deleted too once the blob is ``stored``: a
        replica that took it over meanwhile finds the blob and fetches nothing, so removing its
        lease costs nothing; after a failed fill the marker stays for the next fill to take over."""
        if self.conditional_delete:
            try:
                if await self._if_match("delete_object", key, etag) is not None:
                    return
            except Exception as exc:
                if not is_missing(exc):
                    raise
                return
        elif await self.swap(key, lease_body(self.owner, 0.0, 0.0), etag) is not None:
            if stored:
                await self.bucket.call("delete_object", Key=key)
            return
        self.count(LeaseOutcome.LOST)
        log.warning("lease not released: another replica holds it now", key=key)

    def count(self, outcome: LeaseOutcome) -> None:
        if self.on_lease is not None:
            self.on_lease(outcome.value)

    async def acquire_or_holder(self, digest: str) -> tuple[Lease | None, LeaseBody | None]:
        """The lease to fill ``digest`` from the upstream; or, while another replica holds it,
        ``None`` and what that lease says (its holder's peer listener), when it could be read."""
        return await self._acquire_or_holder(f"{self.bucket.config.prefix}leases/{check_digest(digest)}", digest)

    async def acquire_tag(self, record_key: str) -> Lease | None:
        """The lease to ask the upstream for a tag (``record_key``: its shared record's key), or
        ``None`` while another replica is asking: one upstream request per cold tag, fleet-wide."""
        prefix = self.bucket.config.prefix
        return await self._acquire(f"{prefix}leases/{record_key.removeprefix(prefix)}", record_key)

    async def acquire_collection(self) -> Lease | None:
        """The lease to collect the bucket (``proxy.storage.s3.collect``), or ``None`` while
        another replica or a ``cache gc`` run collects: one collection at a time."""
        return await self._acquire(f"{self.bucket.config.prefix}leases/gc", "the bucket's collection")

    async def _acquire(self, key: str, what: str) -> Lease | None:
        return (await self._acquire_or_holder(key, what))[0]

    async def _acquire_or_holder(self, key: str, what: str) -> tuple[Lease | None, LeaseBody | None]:
        body = lease_body(self.owner, time.time(), self.bucket.config.lease_ttl, self.peer)
        try:
            made = await self.bucket.call("put_object", Key=key, Body=body, IfNoneMatch="*")
            self.count(LeaseOutcome.ACQUIRED)
            return Lease(self, key, str(made["ETag"])), None
        except StoreUnavailable:
            raise
        except Exception as exc:
            # 404: the lease existed when the condition was checked and was deleted before the
            # write (its holder released it, through another gateway): lost all the same.
            if not (lost_race(exc) or is_missing(exc)):
                raise
        resp = await self.bucket.call_if_exists("get_object", Key=key)
        if resp is None:  # released in between: the blob is probably there now; look again
            return None, None
        async with resp["Body"] as stream:
            current = await stream.read()
        holder = parse_lease(current)
        if still_held(holder, time.time()):
            self.count(LeaseOutcome.HELD)
            return None, holder
        etag = await self.swap(key, body, str(resp["ETag"]))
        if etag is None:
            self.count(LeaseOutcome.HELD)  # another replica took it over first
            return None, None
        log.warning("took over an expired lease", of=what, previous=current.decode(errors="replace"))
        self.count(LeaseOutcome.TAKEN_OVER)
        return Lease(self, key, etag), None

    async def swap(self, key: str, body: bytes, etag: str) -> str | None:
        """Compare-and-swap on the object's ETag; the new ETag, or ``None`` when it changed (or
        was deleted meanwhile: then it is no longer the lease that was read either)."""
        try:
            made = await self._if_match("put_object", key, etag, Body=body)
        except StoreUnavailable:
            raise
        except Exception as exc:
            if not is_missing(exc):
                raise
            return None
        return None if made is None else str(made["ETag"])

    async def _if_match(self, operation: str, key: str, etag: str, **kwargs: Any) -> Any | None:
        """``operation`` on ``key`` only while its ETag is still ``etag``: the store's answer, or
        ``None`` when the object changed.

        Sent unquoted first (Ceph RGW 16 compares If-Match without the quotes) and then quoted
        as RFC 9110 writes it: a value that does not match either way cannot succeed wrongly.
        """
        for value in (etag.strip('"'), f'"{etag.strip(chr(34))}"'):
            try:
                return await self.bucket.call(operation, Key=key, IfMatch=value, **kwargs)
            except StoreUnavailable:
                raise
            except Exception as exc:
                if not lost_race(exc):
                    raise
        return None
