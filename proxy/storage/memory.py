"""A store in memory: the whole ``Store`` contract with nothing kept on disk but staging files.

For tests of the pull services in one process (freshness, stale paths, single-flight,
resolution) and for anyone embedding the resolver without a cache directory.  Like every
backend it keeps content only after its digest matched; ``shared`` can be set to behave like a
store other replicas write to (content may appear under a digest without a fill here).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from proxy.errors import DigestMismatch
from proxy.oci.digests import matches
from proxy.oci.names import check_digest
from proxy.sizes import CHUNK
from proxy.storage.base import FetchFromUpstream, LocalFile, Redirect, clear_staging
from proxy.storage.staging import BlobWriter, Fill


class MemoryStore:
    def __init__(self, tmp: Path, *, shared: bool = False) -> None:
        """``tmp``: where fills are staged (a fill is a file that every waiting client reads)."""
        self.tmp = tmp
        self.shared = shared
        clear_staging(tmp)
        self.content: dict[str, tuple[bytes, str]] = {}
        self.touched: list[str] = []

    async def stat(self, digest: str) -> int | None:
        found = self.content.get(digest)
        return len(found[0]) if found else None

    async def get(self, digest: str) -> bytes | None:
        found = self.content.get(digest)
        return found[0] if found else None

    async def save(self, digest: str, data: bytes, media_type: str = "") -> None:
        if not matches(check_digest(digest), data, media_type):
            raise DigestMismatch(f"content does not match {digest}")
        self.content[digest] = (data, media_type)

    async def media_type(self, digest: str) -> str | None:
        found = self.content.get(digest)
        return found[1] or None if found else None

    def writer(self, digest: str) -> BlobWriter:
        return BlobWriter(check_digest(digest), self.tmp, None)

    async def commit(self, writer: BlobWriter) -> None:
        try:
            data = await asyncio.to_thread(writer.tmp_path.read_bytes)
            self.content[writer.digest] = (data, "")
        finally:
            writer.abort()

    def touch(self, digest: str) -> None:
        self.touched.append(digest)

    async def locate(self, digest: str) -> LocalFile | Redirect | None:
        return None

    async def read_range(self, digest: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        found = self.content.get(digest)
        if found is None:
            raise FileNotFoundError(f"{digest} is not stored")
        for offset in range(start, end, CHUNK):
            yield found[0][offset : min(offset + CHUNK, end)]

    async def fill(self, fill: Fill, fetch: FetchFromUpstream) -> None:
        await fetch(fill)

    async def ping(self) -> str:
        return ""

    def describe(self) -> dict[str, Any] | None:
        return None

    async def close(self) -> None:
        pass
