"""Nodes that registered their platform: for runtimes that cannot send the node header (Docker,
podman, CRI-O), ``platproxy node setup`` tells the mirror "requests from my address are
linux/arm/v7", and the mirror places them like a ``[[clients]]`` rule.

A node registers only itself: the address is the registering request's own (the connection's
peer, or behind a trusted proxy the nearest untrusted hop, as for rules), never one named in the
request, so nobody can place another node.  A registration expires after ``[resolve]
registration_ttl`` unless renewed (``node setup`` and ``node check`` renew it), so a node that
went away, or an address reused by another machine, stops being placed by a stale word.
Registrations are kept by ``proxy.storage.nodes`` (SQLite, and the bucket of an S3 tier, read
every ``[store.s3] nodes_every``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from proxy.storage.nodes import NodeRecords
from proxy.storage.records import NodeRecord

log = structlog.get_logger("platproxy.nodes")


class Registrations:
    def __init__(self, records: NodeRecords, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.records = records
        self.ttl = ttl
        self.clock = clock
        self._by_address = {r.address: r for r in records.local()}
        self.on_change: Callable[[], None] = lambda: None
        """Called when what places a node changed (the targets forget their decisions)."""
        self._task: asyncio.Task[None] | None = None

    def platform_of(self, address: str) -> str:
        """The platform ``address`` registered, or ``""`` (none, or expired)."""
        record = self._by_address.get(address)
        return record.platform if record is not None and record.live(self.clock()) else ""

    def get(self, address: str) -> NodeRecord | None:
        record = self._by_address.get(address)
        return record if record is not None and record.live(self.clock()) else None

    def live(self) -> list[NodeRecord]:
        now = self.clock()
        return sorted((r for r in self._by_address.values() if r.live(now)), key=lambda r: r.address)

    async def register(self, address: str, platform: str, runtime: str) -> NodeRecord:
        """Register (or renew) ``address`` as ``platform``; ``sqlite3.Error`` when it cannot be kept."""
        now = self.clock()
        record = NodeRecord(address, platform, runtime, now, now + self.ttl)
        before = self._by_address.get(address)
        await self.records.put(record)
        self._by_address[address] = record
        if before is None or before.platform != platform:
            log.info("node registered", address=address, platform=platform, runtime=runtime)
            self.on_change()
        return record

    async def remove(self, address: str) -> NodeRecord | None:
        record = self._by_address.pop(address, None)
        if record is not None:
            await self.records.delete(address)
            log.info("node registration removed", address=address, platform=record.platform)
            self.on_change()
        return record

    async def sync(self) -> None:
        """Take the bucket's registrations as this replica's (a bucket tier; nothing without one),
        and remove the expired ones from it."""
        shared = await self.records.shared()
        if shared is None:
            return
        now = self.clock()
        for record in shared:
            if not record.live(now):
                await self.records.delete(record.address)
        current = {r.address: r for r in shared if r.live(now)}
        changed = {a: r.platform for a, r in current.items()} != {
            a: r.platform for a, r in self._by_address.items() if r.live(now)
        }
        self._by_address = current
        self.records.replace_local(list(current.values()))
        if changed:
            self.on_change()

    def start(self, period: float) -> None:
        """Read the bucket's registrations every ``period`` seconds (nothing without a bucket)."""
        if self.records.bucket is not None:
            self._task = asyncio.create_task(self._every(period))

    async def _every(self, period: float) -> None:
        while True:
            await self.sync()
            await asyncio.sleep(period)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
