"""Manifests: tag -> digest (fresh, revalidated or stale), resolution of lists, local retag.

A tag whose upstream content is a list or index is answered with the manifest ``resolve``
picks for this host; the record ``name:tag -> chosen digest (index digest, platform, reason,
time)`` is kept in the tag index and answers later pulls, with or without the upstream.  The
index itself stays available by its digest.  A pull by digest is never rewritten: the bytes
of that digest, or a clear error naming what to pull instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import structlog

from hostinfo import HostProfile
from proxy.config import Config
from proxy.errors import (
    ManifestInvalid,
    ManifestUnknown,
    NothingRuns,
    StorageFailed,
    Subject,
    UpstreamError,
    UpstreamFailed,
)
from proxy.metrics import Metrics
from proxy.oci import jsondoc
from proxy.oci.descriptors import entry_kind
from proxy.oci.mediatypes import INDEX_TYPES, OCI_INDEX, ClientCaps
from proxy.oci.resolve import Decision, InvalidIndex, parse_index, resolve_fetching
from proxy.oci.schema1 import EMPTY_TAR_DIGEST
from proxy.pull.content import ManifestContent
from proxy.pull.conversions import Conversions
from proxy.pull.freshness import Action, Freshness, after_revalidation, after_upstream_error, freshness
from proxy.pull.members import Members
from proxy.pull.route import Route
from proxy.pull.signing import SigningKey
from proxy.pull.sparse import ABSENT, first_present
from proxy.pull.targets import REFUSED, UNRESOLVED, Target, profile_key
from proxy.registry.client import ManifestHead, Upstream
from proxy.storage.base import Store
from proxy.storage.records import TagRecord
from proxy.storage.tags import TagRecords

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

log = structlog.get_logger("platproxy.manifests")

#: Resolution for a shared tag record must suit every client: prefer gzip over zstd twins.
RECORD_CLIENT = ClientCaps(zstd=False)


@dataclass(frozen=True)
class Resolution:
    """How a tag's list was resolved: what the client is told in ``X-Platproxy-*`` and the logs."""

    platform: str
    label: str
    """The rank label (``native``, ``lower level``, ...)."""
    index_digest: str


@dataclass(frozen=True)
class ManifestAnswer:
    data: bytes
    media_type: str
    digest: str
    outcome: str
    """hit | miss | revalidated | stale: for logs and metrics."""
    resolution: Resolution | None = None
    """Set when the answer is the manifest chosen from a list."""
    converted_from: str | None = None
    """Set when the answer is a conversion (for an old client) of the manifest with this digest."""


class ManifestService:
    def __init__(
        self,
        config: Config,
        store: Store,
        tags: TagRecords,
        upstreams: dict[str, Upstream],
        host: HostProfile,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        signing_key: Callable[[], EllipticCurvePrivateKey] | None = None,
        members: Members | None = None,
    ) -> None:
        self.metrics = metrics
        self.members = members if members is not None else Members(tags.index, upstreams)
        """What each repository holds: every manifest served for a route is noted there."""
        self.config = config
        self.tags = tags
        self.content = ManifestContent(config, store, tags.index, upstreams)
        key = signing_key if signing_key is not None else SigningKey(config)
        self.conversions = Conversions(config, self.content, tags.index, key, metrics, clock)
        self.upstreams = upstreams
        self.host = host
        self.host_key = profile_key(host)
        self._profiles: dict[str, HostProfile] = {self.host_key: host}
        """Every target resolved for so far, by its record key (a handful: the fleet's platforms)."""
        self.clock = clock
        self._refreshing: dict[tuple[str, str, str, str], asyncio.Task[tuple[TagRecord, str]]] = {}

    # -- by tag --------------------------------------------------------------------------------

    async def by_tag(self, route: Route, tag: str, client: ClientCaps, target: Target | None = None) -> ManifestAnswer:
        """Resolved for ``target`` (default: this host), with a record kept per target platform;
        a target that does not resolve (an index tool, a child proxy) gets the upstream's own answer."""
        if target is not None and target.key == REFUSED:
            raise ManifestUnknown(
                "this mirror cannot tell this client's platform and the client cannot read an index: declare the "
                "node's platform (X-Platproxy-Platform), add a [[clients]] rule for its address, or pull with a "
                "platform selector", {"tag": tag, "reason": "unknown client"},
            )  # fmt: skip
        host = self._key_of(target)
        record = self.tags.get(route.upstream.name, route.repo, tag, host)
        if record is not None and self._fresh(record):
            return await self._answer(route, tag, record, client, "hit")
        record, outcome = await self._refresh_once(route, tag, host)
        return await self._answer(route, tag, record, client, outcome)

    def _key_of(self, target: Target | None) -> str:
        """The record key of ``target`` (this host's without one); its profile is remembered for ``decide``."""
        if target is None:
            return self.host_key
        if target.resolves:
            self._profiles.setdefault(target.key, target.profile)
        return target.key

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
        record = await self.tags.latest(up.name, route.repo, tag, host)  # another replica may have it
        if record is not None and self._fresh(record):
            return record, "hit"
        async with self.tags.asking(up.name, route.repo, tag, host, self._fresh) as kept:  # one replica asks
            if kept is not None:
                return kept, "hit"
            return await self._ask_upstream(route, tag, host, record)

    async def _ask_upstream(self, route: Route, tag: str, host: str, record: TagRecord | None) -> tuple[TagRecord, str]:
        """Revalidate ``record`` (HEAD) or fetch the tag, and keep what the upstream said."""
        up = self.upstreams[route.upstream.name]
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
                await self.tags.revalidated(record, now)
                return record, "revalidated"
            if action is Action.SERVE_STALE:
                error = answer if isinstance(answer, UpstreamError) else UpstreamError(up.name, 404, str(answer))
                return await self._stale(route, tag, record, error), "stale"
            if action is Action.GONE:
                raise ManifestUnknown("tag no longer exists upstream", {"tag": tag})
        try:
            data, media_type, header_digest = await up.get_manifest(
                route.repo, tag, self.config.limits.max_manifest_size
            )
        except UpstreamError as exc:
            if record is not None and after_upstream_error(exc, stale_on_404) is Action.SERVE_STALE:
                return await self._stale(route, tag, record, exc), "stale"
            held = await self._held_index(route, tag) if exc.unreachable else None
            if held is None:
                raise UpstreamFailed(exc, Subject.MANIFEST, f"{route.repo}:{tag}") from None
            # this target never pulled the tag, but the cache holds its index (another target's
            # pull, an imported bundle): resolved from that, as the upstream would have been asked
            log.warning("upstream unreachable: resolving from the index this cache holds", repo=route.repo, tag=tag,
                        target=host, index=held[0], error=exc.message)  # fmt: skip
            return await self._record(route, tag, host, *held, now), "stale"
        digest = await self.content.keep_fetched_by_tag(data, media_type, header_digest, up.name)
        record = await self._record(route, tag, host, digest, media_type, data, now)
        if record.label.endswith(ABSENT):
            return record, "miss"  # never kept: the entry that is absent now may come back
        try:
            await self.tags.keep(record)
        except StorageFailed as exc:  # everything it names is held (else it failed already): answer unkept
            log.warning("tag record not kept: the cache cannot be written", repo=route.repo, tag=tag, target=host,
                        error=exc.reason)  # fmt: skip
        return record, "miss"

    async def _stale(self, route: Route, tag: str, record: TagRecord, error: UpstreamError) -> TagRecord:
        """The record, to serve while the upstream fails, if what it names is still here; the log
        says which of the two the client got."""
        where = {"upstream": route.upstream.name, "repo": route.repo, "tag": tag, "error": error.message}
        if not await self.content.holds(record.digest):
            log.warning("stale tag not served: its manifest is no longer cached", answer="503", **where)
            raise UpstreamFailed(error, Subject.MANIFEST, f"{route.repo}:{tag}")
        log.warning("serving stale tag", digest=record.digest, **where)
        return record

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
        decision = await self.decide(route, data, host)
        chosen = decision.chosen
        if chosen is None:
            log.info("nothing in the index runs here", repo=route.repo, tag=tag, target=host, answer="404",
                     verdicts=[f"{r.platform}: {r.reason}" for r in decision.rejected])  # fmt: skip
            raise NothingRuns(f"no manifest in {route.repo}:{tag} runs on {decision.host}", decision.no_match_detail(),
                              digest)  # fmt: skip
        # the chosen manifest is cached before it is advertised; an absent one gives way to the next
        present = await first_present(decision, lambda d: self.content.load(route, d), f"{route.repo}:{tag}", digest,
                                      await self._present_platforms(data))  # fmt: skip
        chosen, label = present.chosen, present.label
        if present.absent:
            log.warning("best entries absent: serving the next present", repo=route.repo, tag=tag, target=host,
                        absent=[f"{c.platform} {c.digest}" for c in present.absent], served=chosen.digest)  # fmt: skip
        if self.metrics is not None:
            self.metrics.resolutions.labels(str(chosen.platform), chosen.label).inc()
            self.metrics.emulated.inc(chosen.label == "emulated")
        log.info(
            "resolved", repo=route.repo, tag=tag, target=host, chosen=chosen.digest, platform=str(chosen.platform),
            label=chosen.label, candidates=len(decision.candidates), rejected=len(decision.rejected),
        )  # fmt: skip
        log.debug(
            "ranking", repo=route.repo, tag=tag, index=digest, chosen=chosen.digest, platform=str(chosen.platform),
            label=chosen.label, ranking=[c.to_json() for c in decision.candidates],
            rejected=[r.to_json() for r in decision.rejected],
        )  # fmt: skip
        absent = "; ".join(f"{c.platform} ({c.digest}) absent" for c in present.absent)
        return record(
            digest=chosen.digest, media_type=chosen.media_type, index_digest=digest, platform=str(chosen.platform),
            label=label,
            reason=f"rank {chosen.rank} ({chosen.label}) of {len(decision.candidates)} runnable entries"
            + (f"; {absent}" if absent else ""),
        )  # fmt: skip

    async def _held_index(self, route: Route, tag: str) -> tuple[str, str, bytes] | None:
        """The index a record of this tag (any target's) was resolved from, if this cache holds it:
        ``(digest, media type, bytes)``."""
        records = self.tags.index.records_of(route.upstream.name, route.repo, tag)
        shared = await self.tags.latest(route.upstream.name, route.repo, tag, UNRESOLVED)  # an import, on a tier
        for found in [*records, *([shared] if shared is not None else [])]:
            digest = found.index_digest or (found.upstream_digest if found.media_type in INDEX_TYPES else None)
            media_type = await self.content.stored_type(digest) if digest else None
            data = await self.content.stored(digest) if digest and media_type in INDEX_TYPES else None
            if digest and media_type and data is not None:
                return digest, media_type, data
        return None

    async def _present_platforms(self, index: bytes) -> list[str]:
        """The platforms of the entries of ``index`` this cache holds (for the 404 of a sparse index)."""
        found = []
        for entry in parse_index(index).get("manifests", []):
            platform = entry.get("platform") if isinstance(entry, dict) else None
            if (
                not isinstance(platform, dict)
                or entry_kind(entry) != "image"
                or not isinstance(entry.get("digest"), str)
            ):
                continue
            if await self.content.holds(entry["digest"]):
                found.append("/".join(str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k)))
        return sorted(set(found))

    async def decide(self, route: Route, index_data: bytes, target_key: str = "") -> Decision:
        profile = self._profiles.get(target_key, self.host)
        try:
            return await resolve_fetching(index_data, profile, RECORD_CLIENT, self.content.source(route))
        except InvalidIndex as exc:
            raise ManifestInvalid(f"upstream index is invalid: {exc}") from None

    # -- by digest ------------------------------------------------------------------------------

    async def by_digest(self, route: Route, digest: str, client: ClientCaps,
                        target: Target | None = None) -> ManifestAnswer:  # fmt: skip
        """The bytes of ``digest``, never rewritten; an index a list-blind client names gets a 404
        saying which manifest to pull instead."""
        cached = await self.content.stored_type(digest) is not None
        data = await self.content.load(route, digest)
        media_type = await self.content.stored_type(digest) or ""
        outcome = "hit" if cached else "miss"
        if media_type in INDEX_TYPES and client.accepts and not client.accepts_index:
            decision = await self.decide(route, data, self._key_of(target))
            instead = decision.chosen
            raise ManifestUnknown(
                "this digest is a manifest list / index and the client does not accept those; "
                + (f"pull {instead.digest} ({instead.platform}) instead" if instead else "and nothing in it runs here"),
                {"index": digest, "platform": str(instead.platform) if instead else None,
                 "digest": instead.digest if instead else None},
            )  # fmt: skip
        if client.accepts and not client.accepts_type(media_type):
            log.warning("serving a manifest type the client did not ask for", digest=digest, media_type=media_type,
                        engine=client.engine)  # fmt: skip
        self.members.note_manifest(route, digest, data)
        return ManifestAnswer(data, media_type, digest, outcome)

    async def confirm(self, route: Route, digest: str) -> None:
        """Raise unless the manifest ``digest`` may be served under ``route`` (``members``); one
        platproxy made is held where the blobs it was made from are (``made_from``)."""

        async def sources() -> list[str]:
            data = await self.content.stored(digest)
            return made_from(data) if data is not None else []

        async def stored() -> bool:
            return await self.content.stored_type(digest) is not None

        await self.members.confirm(route, "manifest", digest, stored, sources)

    # -- listings -------------------------------------------------------------------------------

    async def tag_names(self, route: Route) -> list[str]:
        """The upstream's tags, sorted; the tags kept here when it cannot answer (none: its error)."""
        up = self.upstreams[route.upstream.name]
        try:
            return sorted(set(await up.tags(route.repo)))
        except UpstreamError as exc:
            kept = self.tags.tags(up.name, route.repo)
            if not kept:
                raise UpstreamFailed(exc, Subject.REPOSITORY, f"repository {route.repo}") from None
            return kept

    async def referrers(self, route: Route, digest: str, artifact_type: str) -> tuple[bytes, dict[str, str]]:
        """The upstream's referrers index (``artifactType`` passed on encoded, as the client sent
        it); an upstream without the referrers API gives an empty index, never a 404."""
        query = urlencode({"artifactType": artifact_type}) if artifact_type else ""
        try:
            return await self.upstreams[route.upstream.name].referrers(route.repo, digest, query)
        except UpstreamError as exc:
            if exc.status not in (404, 405):
                raise UpstreamFailed(exc, Subject.MANIFEST, f"referrers of {digest}") from None
        empty = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        return json.dumps(empty).encode(), {"Content-Type": OCI_INDEX}

    # -- shared ----------------------------------------------------------------------------------

    async def _answer(self, route: Route, tag: str, record: TagRecord, client: ClientCaps,
                      outcome: str) -> ManifestAnswer:  # fmt: skip
        if record.index_digest is not None and self.config.resolve.list_aware_clients == "index":
            index_type = await self.content.stored_type(record.index_digest) or ""
            if client.accepts_type(index_type):
                data = await self.content.load(route, record.index_digest)
                self.members.note_manifest(route, record.index_digest, data, record.digest)
                return ManifestAnswer(data, index_type, record.index_digest, outcome)
        served = await self.conversions.serve(route, tag, record.digest, record.media_type, client, record.platform)
        resolution = Resolution(record.platform, record.label, record.index_digest) if record.index_digest else None
        converted_from = record.digest if served.digest != record.digest else None
        self.members.note_manifest(route, served.digest, served.data, record.digest, record.index_digest)
        return ManifestAnswer(served.data, served.media_type, served.digest, outcome, resolution, converted_from)


def made_from(manifest: bytes) -> list[str]:
    """The blobs an image manifest is made of, as far as who may read it goes: its config (which
    names every layer); for schema 1, its layers but platproxy's own empty one.  ``[]`` for an
    index or anything unreadable."""
    try:
        doc = jsondoc.loads(manifest)
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    config = doc.get("config")
    if isinstance(config, dict) and isinstance(config.get("digest"), str):
        return [config["digest"]]
    layers = doc.get("fsLayers")
    sums = [x.get("blobSum") for x in layers if isinstance(x, dict)] if isinstance(layers, list) else []
    return sorted({s for s in sums if isinstance(s, str) and s != EMPTY_TAR_DIGEST})
