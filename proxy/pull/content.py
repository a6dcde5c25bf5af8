"""Manifests (and the small config blobs resolution reads) by digest: from the store, else from
the upstream, verified and kept.

This is the pull-through manifest store in Distribution's sense: content-addressed and never
rewritten.  A manifest is kept only if it hashes to its digest and is a manifest at all (its
media type from the upstream, else sniffed from the document for old registries).  Its media
type is remembered in the tag index (the file store keeps bytes only) or, with a shared store,
as the object's content type.
"""

from __future__ import annotations

import contextlib
import sqlite3

import structlog

from proxy.config import Config
from proxy.errors import (
    DigestMismatch,
    ManifestInvalid,
    PlatproxyError,
    StorageFailed,
    Subject,
    UpstreamError,
    UpstreamFailed,
)
from proxy.oci import jsondoc
from proxy.oci.digests import manifest_digest, matches
from proxy.oci.mediatypes import MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST
from proxy.oci.resolve import InvalidIndex, parse_index
from proxy.pull.route import Route
from proxy.registry.client import Upstream
from proxy.sizes import MAX_CONFIG_SIZE
from proxy.storage.base import Store
from proxy.storage.tagindex import TagIndex

log = structlog.get_logger("platproxy.manifests")


class ManifestContent:
    def __init__(self, config: Config, store: Store, index: TagIndex, upstreams: dict[str, Upstream]) -> None:
        self.config = config
        self.store = store
        self.index = index
        self.upstreams = upstreams

    async def load(self, route: Route, digest: str) -> bytes:
        """A manifest by digest: from the store, else from the upstream (verified, then kept)."""
        if await self.stored_type(digest) is not None:
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

    async def keep_fetched_by_tag(self, data: bytes, media_type: str, header_digest: str | None, upstream: str) -> str:
        """Verify and store a manifest fetched by tag; its digest is the sha256 of the bytes (of the
        payload, for a signed schema 1 manifest)."""
        digest = manifest_digest(data, media_type)
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise ManifestInvalid(f"upstream {upstream} sent bytes that do not match its digest",
                                  {"header": header_digest, "computed": digest})  # fmt: skip
        await self._store_manifest(digest, data, media_type, upstream)
        return digest

    async def stored_type(self, digest: str) -> str | None:
        """The media type of a manifest this proxy's store holds (``None``: not stored)."""
        known = self.index.manifest_type(digest)
        if known is None and self.store.shared:
            try:
                known = await self.store.media_type(digest)
            except OSError as exc:
                log.warning("store unavailable", digest=digest, error=str(exc))
                return None
            if known is not None:
                with contextlib.suppress(sqlite3.Error):
                    self.index.put_manifest(digest, known, 0)
        return known

    async def _store_manifest(self, digest: str, data: bytes, media_type: str, upstream: str) -> None:
        """Keep a manifest under ``digest`` only if it hashes to it and is a manifest at all.  One
        the store already holds is not written again (a read-only cache still answers with it)."""
        media_type = media_type if media_type in MANIFEST_TYPES else sniff_type(data)
        if not media_type:
            raise ManifestInvalid(f"upstream {upstream} sent something that is not a manifest")
        if (
            self.index.manifest_type(digest) is not None
            and matches(digest, data, media_type)
            and await self.holds(digest)
        ):
            return
        try:
            await self.store.save(digest, data, media_type)
            self.index.put_manifest(digest, media_type, len(data))
        except (OSError, sqlite3.Error) as exc:
            raise StorageFailed(f"manifest {digest}", exc) from None
        except DigestMismatch:
            raise ManifestInvalid(f"upstream {upstream} sent bytes that do not match {digest}") from None

    async def _read_stored(self, digest: str, what: str) -> bytes | None:
        """Stored content, ``None`` if absent; a store that cannot be read is the client's 503/507."""
        try:
            return await self.store.get(digest)
        except OSError as exc:
            raise StorageFailed(f"{what} {digest}", exc) from None

    def source(self, route: Route) -> CachedSource:
        """What the resolver reads through this cache for ``route`` (unreadable content: ``None``)."""
        return CachedSource(self, route)

    async def config_blob(self, route: Route, digest: str) -> bytes:
        """A small blob (an image config): from the store, else the upstream, verified and kept.

        ``UpstreamFailed`` when the upstream cannot give it, ``ManifestInvalid`` when what it gave
        is too large for a config or does not match the digest.
        """
        data = await self._read_stored(digest, "config blob")
        if data is not None:
            return data
        up = self.upstreams[route.upstream.name]
        try:
            data = await up.get_small_blob(route.repo, digest, MAX_CONFIG_SIZE)
        except UpstreamError as exc:
            raise UpstreamFailed(exc, Subject.BLOB, f"{route.repo}@{digest}") from None
        if data is None:
            raise ManifestInvalid(f"image config {digest} is larger than {MAX_CONFIG_SIZE} bytes")
        try:
            await self.store.save(digest, data)
        except DigestMismatch:
            raise ManifestInvalid(f"upstream {up.name} sent a config that does not match {digest}") from None
        except OSError as exc:
            raise StorageFailed(f"config blob {digest}", exc) from None
        return data

    async def holds(self, digest: str) -> bool:
        """Whether the store has ``digest`` itself (a stat, not a read; not the index's word for it)."""
        try:
            return await self.store.stat(digest) is not None
        except OSError as exc:
            raise StorageFailed(f"manifest {digest}", exc) from None

    async def stored(self, digest: str) -> bytes | None:
        """Content this store holds (``None``: not stored); never asks the upstream."""
        return await self._read_stored(digest, "manifest")

    async def keep(self, digest: str, data: bytes, media_type: str) -> None:
        """Store a manifest platproxy made (a conversion) under its digest, checked like any other."""
        await self._store_manifest(digest, data, media_type, "platproxy")


class CachedSource:
    """``ContentSource`` for the resolver: manifests and configs through the cache, verified and kept."""

    def __init__(self, content: ManifestContent, route: Route) -> None:
        self.content = content
        self.route = route

    async def manifest(self, digest: str) -> bytes | None:
        try:
            return await self.content.load(self.route, digest)
        except PlatproxyError:
            return None

    async def blob(self, digest: str) -> bytes | None:
        try:
            return await self.content.config_blob(self.route, digest)
        except PlatproxyError:
            return None


def sniff_type(data: bytes) -> str:
    """The media type of a manifest whose upstream gave none usable (old registries)."""
    try:
        doc = jsondoc.loads(data)
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
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    return ""
