"""Every resolution, counted for the fleet view: what each platform got for each image.

Observations are counted in memory per (image, platform, outcome) and added to the records
(``proxy.storage.fleet``) every ``every`` seconds, never one write per pull; with a bucket the
replica's records are then shared as one object.  ``platproxy_fleet_images{outcome,platform}``
counts the images whose latest pull on a platform had that outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import structlog

from hostinfo import PlatformError
from hostinfo.probe import host_profile
from proxy.config import check_platform
from proxy.errors import StoreUnavailable, UpstreamError
from proxy.fleet.outcomes import Outcome
from proxy.fleet.report import Report, add_what_if, build
from proxy.fleet.whatif import evaluate
from proxy.metrics import Metrics
from proxy.oci.digests import digest_of
from proxy.registry.client import Upstream
from proxy.sizes import MAX_MANIFEST_SIZE
from proxy.storage.fleet import FleetError, FleetRecords, merge
from proxy.storage.records import FleetRecord

log = structlog.get_logger("platproxy.fleet")


@dataclass(slots=True)
class _Counted:
    """A record being counted: what the first answer was, and the two fields a repeat moves."""

    first: FleetRecord
    last_seen: float
    count: int


class FleetLog:
    def __init__(self, records: FleetRecords, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.records = records
        self.metrics = metrics
        self.clock = clock
        self.pending: dict[tuple[str, str, str], _Counted] = {}
        self._task: asyncio.Task[None] | None = None
        self._shared_at = -1.0
        self._changed = False
        self.share_every = 60.0

    def note(self, image: str, platform: str, source: str, outcome: Outcome, index_digest: str = "",
             chosen: str = "", chosen_platform: str = "", reason: str = "") -> None:  # fmt: skip
        now = self.clock()
        key = (image, platform, outcome.kind)
        counted = self.pending.get(key)
        if counted is not None and (counted.first.source, counted.first.chosen) == (source, chosen):
            counted.last_seen = now  # the hot path: the same answer again, counted in place
            counted.count += 1
            return
        first_seen = counted.first.first_seen if counted else now
        record = FleetRecord(image, platform, outcome.kind, outcome.detail, source, index_digest, chosen,
                             chosen_platform, reason[:500], first_seen, now, 0)  # fmt: skip
        self.pending[key] = _Counted(record, now, (counted.count if counted else 0) + 1)

    def _pending(self) -> list[FleetRecord]:
        return [replace(c.first, last_seen=c.last_seen, count=c.count) for c in self.pending.values()]

    def snapshot(self) -> list[FleetRecord]:
        """This replica's records with what is not yet written (``FleetError``: unreadable)."""
        return merge([*self.records.local(), *self._pending()])

    async def flush(self, share_now: bool = False) -> None:
        """Add what was counted to the records, and share them when they changed and the last
        share is ``share_every`` old (or ``share_now``); best effort (logged)."""
        if self.pending:
            batch, self.pending = self._pending(), {}
            try:
                self.records.add(batch)
            except sqlite3.Error as exc:
                log.warning("cannot keep the fleet records", error=str(exc))
                return
            self._changed = True
            self._gauge()
        due = share_now or self.clock() - self._shared_at >= self.share_every
        if self.records.bucket is not None and self._changed and due:
            try:
                await self.records.share()
                self._shared_at, self._changed = self.clock(), False
            except StoreUnavailable as exc:
                log.warning("cannot share the fleet records", error=str(exc))

    def _gauge(self) -> None:
        if self.metrics is None:
            return
        try:
            records = self.records.local()
        except FleetError:
            return
        counts: Counter[tuple[str, str]] = Counter()  # each image's latest outcome per platform, as the report's
        for cells in build(records).images.values():
            counts.update((cell.outcome, platform) for platform, cell in cells.items())
        self.metrics.fleet_images.clear()
        for (outcome, platform), n in counts.items():
            self.metrics.fleet_images.labels(outcome, platform).set(n)

    def start(self, every: float, share_every: float) -> None:
        self.share_every = share_every
        self._gauge()
        self._task = asyncio.create_task(self._every(every))

    async def _every(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            await self.flush()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush(share_now=True)

    async def everywhere(self) -> tuple[list[FleetRecord], list[str]]:
        """This replica's records and, on a bucket tier, every other replica's, merged; and what
        could not be read (one line each)."""
        local = self.snapshot()
        if self.records.bucket is None:
            return local, []
        try:
            others, problems = await self.records.shared(exclude=self.records.replica)
        except StoreUnavailable as exc:
            return local, [f"the other replicas' fleet records cannot be read: {exc}"]
        return merge([*local, *others]), problems


class UnknownTarget(ValueError):
    """A what-if platform that does not exist; the message says why."""


async def fleet_report(records: list[FleetRecord], load: Callable[[str], Awaitable[bytes | None]], *,
                       images: str = "*", platforms: tuple[str, ...] = (), outcomes: tuple[str, ...] = (),
                       since: float = 0.0, targets: tuple[str, ...] = (), now: float = 0.0,
                       refresh: Refresh | None = None) -> Report:  # fmt: skip
    """The report over ``records``, with a what-if column per target evaluated from the cached
    indexes (``load``: a digest's bytes from the cache), for a remote node of that platform as the
    mirror places one (no 32-bit fallback assumed).  ``refresh``: read each image's index as its
    tag points now, and what it needs, from the upstream instead.  ``UnknownTarget`` for a
    platform that does not exist."""
    profiles = []
    for target in targets:
        try:
            profiles.append((str(check_platform(target)), host_profile(target, (), "no", "no")))
        except (ValueError, PlatformError) as exc:
            raise UnknownTarget(f"--target {target}: {exc}") from None
    report = build(records, images=images, platforms=platforms, outcomes=outcomes, since=since, now=now)
    indexes, load_for = dict(report.indexes), lambda _image: load
    if refresh is not None and profiles:
        indexes = {image: await refresh.index(image) for image in report.images}
        load_for = refresh.loader
    for name, profile in profiles:
        add_what_if(report, name, await evaluate(name, profile, indexes, load_for))
    return report


class Refresh:
    """``report --refresh``: each image's tag asked of its upstream now, and the manifests and
    configs its resolution needs, from that image's repository (nothing is cached)."""

    def __init__(self, upstreams: dict[str, Upstream]) -> None:
        self.upstreams = upstreams
        self.fetched: dict[str, bytes] = {}
        self.problems: list[str] = []

    def _where(self, image: str) -> tuple[Upstream | None, str, str]:
        upstream, _, rest = image.partition("/")
        repo, _, tag = rest.rpartition(":")
        return self.upstreams.get(upstream), repo, tag

    async def index(self, image: str) -> str:
        """The digest the tag points at now (``""``: it could not be read; the problem is kept)."""
        up, repo, tag = self._where(image)
        if up is None:
            self.problems.append(f"{image}: no upstream of that name in this configuration")
            return ""
        try:
            data, _, _ = await up.get_manifest(repo, tag, MAX_MANIFEST_SIZE)
        except UpstreamError as exc:
            self.problems.append(f"{image}: {exc.message}")
            return ""
        digest = digest_of(data)
        self.fetched[digest] = data
        return digest

    def loader(self, image: str) -> Callable[[str], Awaitable[bytes | None]]:
        up, repo, _ = self._where(image)

        async def load(digest: str) -> bytes | None:
            if digest in self.fetched or up is None:
                return self.fetched.get(digest)
            try:
                data, _, _ = await up.get_manifest(repo, digest, MAX_MANIFEST_SIZE)
            except UpstreamError:
                try:
                    data = await up.get_small_blob(repo, digest, MAX_MANIFEST_SIZE) or b""
                except UpstreamError:
                    return None
            self.fetched[digest] = data
            return data

        return load
