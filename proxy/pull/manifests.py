"""Manifests: tag -> digest (fresh, revalidated or stale), resolution of lists, local retag.

A tag whose upstream content is a list or index is answered with the manifest ``resolve``
picks for this host; the record ``name:tag -> chosen digest (index digest, platform, reason,
time)`` is kept in the tag index and answers later pulls, with or without the upstream.  The
index itself stays available by its digest.  A pull by digest is never rewritten: the bytes
of that digest, or a clear error naming what to pull instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from hostinfo import HostProfile
from proxy.config import Config
from proxy.errors import (
    DigestMismatch,
    ManifestInvalid,
    ManifestUnknown,
    PlatproxyError,
    StorageFailed,
    Subject,
    UpstreamError,
    UpstreamFailed,
)
from proxy.metrics import Metrics
from proxy.oci.mediatypes import INDEX_TYPES, MANIFEST_TYPES, ClientCaps
from proxy.oci.resolve import Decision, InvalidIndex, parse_index, resolve_fetching
from proxy.pull.freshness import Action, Freshness, after_revalidation, freshness
from proxy.pull.route import Route
from proxy.registry.client import ManifestHead, Upstream, read_limited
from proxy.storage.files import Store
from proxy.storage.sharedtags import SharedTags, newer
from proxy.storage.tagindex import TagIndex, TagRecord

log = structlog.get_logger("platproxy.manifests")

#: Resolution for a shared tag record must suit every client: prefer gzip over zstd twins.
RECORD_CLIENT = ClientCaps(accepts=None, zstd=False)
UNRESOLVED = "-"
"""The host key of tag records kept for a child proxy that resolves for itself (no resolution here)."""
MAX_CONFIG_SIZE = 16 * 2**20


@dataclass
class ManifestAnswer:
    data: bytes
    media_type: str
    digest: str
    outcome: str
    """hit | miss | revalidated | stale: for logs and metrics."""
    headers: dict[str, str] = field(default_factory=dict)


class ManifestService:
    def __init__(
        self,
        config: Config,
        store: Store,
        tags: TagIndex,
        upstreams: dict[str, Upstream],
        host: HostProfile,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        shared: SharedTags | None = None,
    ) -> None:
        self.shared = shared
        self.metrics = metrics
        self.config = config
        self.store = store
        self.tags = tags
        self.upstreams = upstreams
        self.host = host
        self.host_key = str(host.platform) + "".join(
            f"+{k}" for k in ("ia32", "aarch32", "arm64") if getattr(host.capabilities, k)
        )
        self.clock = clock
        self._refreshing: dict[tuple[str, str, str, str], asyncio.Task[tuple[TagRecord, str]]] = {}

    # -- by tag --------------------------------------------------------------------------------

    async def by_tag(self, route: Route, tag: str, client: ClientCaps, *, resolve: bool = True) -> ManifestAnswer:
        """``resolve=False``: a child proxy asks for the upstream's own answer (it resolves for its host)."""
        host = self.host_key if resolve else UNRESOLVED
        record = self.tags.get(route.upstream.name, route.repo, tag, host)
        if record is not None and self._fresh(record):
            return await self._answer(route, record, client, "hit")
        record, outcome = await self._refresh_once(route, tag, host)
        return await self._answer(route, record, client, outcome)

    def _fresh(self, record: TagRecord) -> bool:
        return freshness(record, self.clock(), self.config.cache.tag_ttl) is Freshness.FRESH

    async def _refresh_once(self, route: Route, tag: str, host: str) -> tuple[TagRecord, str]:
        """Revalidate or fetch a tag once however many clients ask at the same moment.

        The work runs in its own task, so a client that disconnects does not cancel it for the
        others; every waiting client then answers from the same record.
        """
        key = (route.upstream.name, route.repo, tag, host)
        task = self._refreshing.get(key)
        if task is None:
            task = asyncio.create_task(self._refresh(route, tag, host))
            self._refreshing[key] = task
            task.add_done_callback(lambda _: self._refreshing.pop(key, None))
        return await asyncio.shield(task)

    async def _refresh(self, route: Route, tag: str, host: str) -> tuple[TagRecord, str]:
        up = self.upstreams[route.upstream.name]
        record = self.tags.get(up.name, route.repo, tag, host)
        if self.shared is not None:  # another replica may have fetched or revalidated it
            found = newer(record, await self.shared.get(up.name, route.repo, tag, host))
            if found is not None and found is not record:
                self._put_record(found, f"{route.repo}:{tag}")
                record = found
            if record is not None and self._fresh(record):
                return record, "hit"
        now = self.clock()
        stale_on_404 = self.config.cache.serve_stale_on_not_found
        if record is not None:
            answer: ManifestHead | UpstreamError | None
            try:
                answer = await up.head_manifest(route.repo, tag)
            except UpstreamError as exc:
                answer = exc
            action = after_revalidation(record, answer, stale_on_404)
            if action is Action.KEEP:
                self.tags.touch(record, now)
                if self.shared is not None:
                    await self.shared.put(dataclasses.replace(record, checked_at=now))
                return record, "revalidated"
            if action is Action.SERVE_STALE:
                log.warning("serving stale tag", upstream=up.name, repo=route.repo, tag=tag, error=str(answer))
                return record, "stale"
            if action is Action.GONE:
                raise ManifestUnknown("tag no longer exists upstream", {"tag": tag})
        try:
            data, media_type, header_digest = await up.get_manifest(
                route.repo, tag, self.config.limits.max_manifest_size
            )
        except UpstreamError as exc:
            if record is not None and (exc.status != 404 or stale_on_404):
                log.warning("serving stale tag", upstream=up.name, repo=route.repo, tag=tag, error=exc.message)
                return record, "stale"
            raise UpstreamFailed(exc, Subject.MANIFEST, f"{route.repo}:{tag}") from None
        digest = await self._keep_manifest(data, media_type, header_digest, up.name)
        record = await self._record(route, tag, host, digest, media_type, data, now)
        self._put_record(record, f"{route.repo}:{tag}")
        if self.shared is not None:
            await self.shared.put(record)
        return record, "miss"

    def _put_record(self, record: TagRecord, what: str) -> None:
        try:
            self.tags.put(record)
        except sqlite3.Error as exc:
            raise StorageFailed(f"the record of {what}", exc) from None

    async def _record(
        self, route: Route, tag: str, host: str, digest: str, media_type: str, data: bytes, now: float
    ) -> TagRecord:
        def record(**fields: str | None) -> TagRecord:
            return TagRecord(upstream=route.upstream.name, repo=route.repo, tag=tag, host=host,
                             upstream_digest=digest, fetched_at=now, checked_at=now, **fields)  # type: ignore[arg-type]  # fmt: skip

        if media_type not in INDEX_TYPES or host == UNRESOLVED:
            reason = "not a list" if media_type not in INDEX_TYPES else "passed on unresolved (a child resolves it)"
            return record(digest=digest, media_type=media_type, index_digest=None, platform="", label="",
                          reason=reason)  # fmt: skip
        decision = await self.decide(route, data)
        chosen = decision.chosen
        if chosen is None:
            raise ManifestUnknown(
                f"no manifest in {route.repo}:{tag} runs on {decision.host}",
                decision.no_match_detail(),
            )  # fmt: skip
        await self.load(route, chosen.digest)  # cache the chosen manifest before advertising it
        if self.metrics is not None:
            self.metrics.resolutions.labels(str(chosen.platform), chosen.label).inc()
        log.info(
            "resolved", repo=route.repo, tag=tag, chosen=chosen.digest, platform=str(chosen.platform),
            label=chosen.label, candidates=len(decision.candidates), rejected=len(decision.rejected),
        )  # fmt: skip
        log.debug(
            "ranking", repo=route.repo, tag=tag, index=digest, chosen=chosen.digest, platform=str(chosen.platform),
            label=chosen.label, ranking=[c.to_json() for c in decision.candidates],
            rejected=[r.to_json() for r in decision.rejected],
        )  # fmt: skip
        return record(
            digest=chosen.digest, media_type=chosen.media_type, index_digest=digest, platform=str(chosen.platform),
            label=chosen.label,
            reason=f"rank {chosen.rank} ({chosen.label}) of {len(decision.candidates)} runnable entries",
        )  # fmt: skip

    async def decide(self, route: Route, index_data: bytes) -> Decision:
        async def fetch(digest: str, is_blob: bool) -> bytes | None:
            try:
                return await (self._load_blob(route, digest) if is_blob else self.load(route, digest))
            except PlatproxyError:
                return None

        try:
            return await resolve_fetching(index_data, self.host, RECORD_CLIENT, fetch)
        except InvalidIndex as exc:
            raise ManifestInvalid(f"upstream index is invalid: {exc}") from None

    # -- by digest ------------------------------------------------------------------------------

    async def by_digest(self, route: Route, digest: str, client: ClientCaps) -> ManifestAnswer:
        cached = await self._stored_type(digest) is not None
        data = await self.load(route, digest)
        media_type = await self._stored_type(digest) or ""
        outcome = "hit" if cached else "miss"
        if media_type in INDEX_TYPES and client.accepts is not None and not client.accepts_index:
            decision = await self.decide(route, data)
            instead = decision.chosen
            raise ManifestUnknown(
                "this digest is a manifest list / index and the client does not accept those; "
                + (f"pull {instead.digest} ({instead.platform}) instead" if instead else "and nothing in it runs here"),
                {"index": digest, "platform": str(instead.platform) if instead else None,
                 "digest": instead.digest if instead else None},
            )  # fmt: skip
        if not client.accepts_type(media_type):
            raise ManifestUnknown(
                f"manifest is {media_type}, which the client does not accept",
                {"digest": digest, "mediaType": media_type},
            )  # fmt: skip
        return ManifestAnswer(data, media_type, digest, outcome)

    # -- shared ----------------------------------------------------------------------------------

    async def _answer(self, route: Route, record: TagRecord, client: ClientCaps, outcome: str) -> ManifestAnswer:
        want_index = (
            record.index_digest is not None
            and self.config.resolve.list_aware_clients == "index"
            and client.accepts_index
        )
        if want_index and record.index_digest is not None:
            data = await self.load(route, record.index_digest)
            media_type = await self._stored_type(record.index_digest) or ""
            return ManifestAnswer(data, media_type, record.index_digest, outcome)
        if not client.accepts_type(record.media_type):
            raise ManifestUnknown(
                f"this tag resolves to {record.platform} as {record.media_type}, which the client's Accept "
                "header does not list",
                {"platform": record.platform, "mediaType": record.media_type, "digest": record.digest,
                 "reason": "client Accept lacks the chosen manifest's media type"},
            )  # fmt: skip
        data = await self.load(route, record.digest)
        headers = {}
        if record.index_digest:
            headers = {
                "X-Platproxy-Platform": record.platform,
                "X-Platproxy-Resolved-From": record.index_digest,
                "X-Platproxy-Rank": record.label,
            }
        return ManifestAnswer(data, record.media_type, record.digest, outcome, headers)

    async def _keep_manifest(self, data: bytes, media_type: str, header_digest: str | None, upstream: str) -> str:
        """Verify and store a manifest fetched by tag; its digest is the sha256 of the bytes."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise ManifestInvalid(f"upstream {upstream} sent bytes that do not match its digest",
                                  {"header": header_digest, "computed": digest})  # fmt: skip
        await self._store_manifest(digest, data, media_type, upstream)
        return digest

    async def _stored_type(self, digest: str) -> str | None:
        """The media type of a manifest this proxy's store holds (``None``: not stored)."""
        known = self.tags.manifest_type(digest)
        if known is None and self.store.shared:
            try:
                known = await self.store.media_type(digest)
            except OSError as exc:
                log.warning("store unavailable", digest=digest, error=str(exc))
                return None
            if known is not None:
                with contextlib.suppress(sqlite3.Error):
                    self.tags.put_manifest(digest, known, 0)
        return known

    async def _store_manifest(self, digest: str, data: bytes, media_type: str, upstream: str) -> None:
        """Keep a manifest under ``digest`` only if it hashes to it and is a manifest at all."""
        media_type = media_type if media_type in MANIFEST_TYPES else _sniff_type(data)
        if not media_type:
            raise ManifestInvalid(f"upstream {upstream} sent something that is not a manifest")
        try:
            await self.store.save(digest, data, media_type)
            self.tags.put_manifest(digest, media_type, len(data))
        except (OSError, sqlite3.Error) as exc:
            raise StorageFailed(f"manifest {digest}", exc) from None
        except DigestMismatch:
            raise ManifestInvalid(f"upstream {upstream} sent bytes that do not match {digest}") from None

    async def load(self, route: Route, digest: str) -> bytes:
        """A manifest by digest: from the store, else from the upstream (verified, then kept)."""
        if await self._stored_type(digest) is not None:
            data = await self._read_stored(digest, "manifest")
            if data is not None:
                return data
        up = self.upstreams[route.upstream.name]
        try:
            data, media_type, _ = await up.get_manifest(route.repo, digest, self.config.limits.max_manifest_size)
        except UpstreamError as exc:
            raise UpstreamFailed(exc, Subject.MANIFEST, f"{route.repo}@{digest}") from None
        await self._store_manifest(digest, data, media_type, up.name)
        return data

    async def _read_stored(self, digest: str, what: str) -> bytes | None:
        """Stored content, ``None`` if absent; a store that cannot be read is the client's 503/507."""
        try:
            return await self.store.get(digest)
        except OSError as exc:
            raise StorageFailed(f"{what} {digest}", exc) from None

    async def _load_blob(self, route: Route, digest: str) -> bytes | None:
        """A small blob (an image config) for resolution; verified and kept like any blob."""
        data = await self._read_stored(digest, "config blob")
        if data is not None:
            return data
        up = self.upstreams[route.upstream.name]
        try:
            async with up.open_blob(route.repo, digest) as resp:
                data = await read_limited(resp, MAX_CONFIG_SIZE)
        except UpstreamError:
            return None
        if data is None:
            return None
        try:
            await self.store.save(digest, data)
        except DigestMismatch:
            return None
        except OSError as exc:
            raise StorageFailed(f"config blob {digest}", exc) from None
        return data


def _sniff_type(data: bytes) -> str:
    """The media type of a manifest whose upstream gave none usable (old registries)."""
    try:
        doc = json.loads(data)
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    if isinstance(doc.get("mediaType"), str) and doc["mediaType"] in MANIFEST_TYPES:
        return str(doc["mediaType"])
    if "manifests" in doc:
        try:
            parse_index(data)
        except InvalidIndex:
            return ""
        return "application/vnd.oci.image.index.v1+json"
    if "config" in doc and "layers" in doc:
        return "application/vnd.oci.image.manifest.v1+json"
    return ""
