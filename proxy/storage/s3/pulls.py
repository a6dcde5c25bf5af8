"""When content in the bucket was last pulled, reported cheaply: one small object per replica
per period, never one write per hit.

S3 cannot update an object's metadata in place (a copy per hit would rewrite the blob), so each
replica keeps the pull times of the period in memory and writes them as one batch,
``<prefix>pulls/<time>-<owner>.json`` (``{digest: unix time}``), every ``pull_times_every``
and when it stops.  A collection merges every batch into ``<prefix>pulls/merged.json`` and
deletes the batches it merged (``proxy.storage.s3.collect``).  A replica that dies loses at
most one period of reports: its content then looks as old as its previous pull, never older
than its upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time

import structlog

from proxy.errors import StoreUnavailable
from proxy.storage.s3.bucket import Bucket

log = structlog.get_logger("platproxy.s3")

MERGED = "merged.json"


def batch_key(prefix: str, owner: str, now: float) -> str:
    """Sorted by time in a listing; the owner part keeps two replicas' batches of one
    millisecond apart."""
    return f"{prefix}pulls/{int(now * 1000):015d}-{hashlib.sha256(owner.encode()).hexdigest()[:12]}.json"


class PullTimes:
    """This replica's pulls since its last report."""

    def __init__(self, bucket: Bucket, owner: str) -> None:
        self.bucket = bucket
        self.owner = owner
        self.pending: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def note(self, digest: str) -> None:
        self.pending[digest] = time.time()

    def start(self) -> None:
        self._task = asyncio.create_task(self._every(self.bucket.config.pull_times_every))

    async def _every(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            await self.report()

    async def report(self) -> None:
        """Write the pending pulls as one batch; kept for the next report when the bucket fails."""
        if not self.pending:
            return
        batch, self.pending = self.pending, {}
        key = batch_key(self.bucket.config.prefix, self.owner, time.time())
        try:
            await self.bucket.call("put_object", Key=key, Body=json.dumps(batch).encode(),
                                   ContentType="application/json")  # fmt: skip
        except StoreUnavailable as exc:
            log.warning("cannot report pull times; kept for the next report", count=len(batch), error=str(exc))
            self.pending = batch | self.pending

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.report()
