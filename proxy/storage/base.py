"""The store's whole contract, as the pull services see it, and the pieces every backend shares.

``Store`` is what the services and the HTTP edge use; nothing outside ``proxy.storage`` knows
which backend it has (``proxy.storage.factory.open_storage`` picks it from the config).  A
backend keeps content by digest and only after the digest was verified; it stages fills in a
local temporary file (``proxy.storage.staging``), so hashing, single-flight and streaming to
waiting clients are the same code for every backend; backends differ in where verified
content goes (``commit``), how it is handed to a client (``locate`` / ``read_range``) and how
replicas agree on who fetches a cold blob (``fill``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from proxy.storage.staging import BlobWriter, Fill

FetchFromUpstream = Callable[[Fill], Awaitable[None]]
"""Copies the upstream body into ``fill.writer`` (calling ``fill.advance``); raises on failure."""


@dataclass(frozen=True)
class LocalFile:
    """Stored content is this file: send it with ``sendfile``, Range handled by the server."""

    path: Path


@dataclass(frozen=True)
class Redirect:
    """Send the client here (a presigned URL) instead of the bytes."""

    location: str


class Store(Protocol):
    shared: bool
    """True when content lives outside this process's cache directory (a bucket other replicas
    use): no per-replica disk budget applies, and another replica may fill what this one wants."""
    tmp: Path
    """Local staging folder for fills."""

    async def stat(self, digest: str) -> int | None:
        """The size of stored content, ``None`` when it is not stored."""
        ...

    async def get(self, digest: str) -> bytes | None:
        """Small stored content (a manifest, a config), ``None`` when it is not stored."""
        ...

    async def save(self, digest: str, data: bytes, media_type: str = "") -> None:
        """Store small content after checking its digest (``DigestMismatch`` otherwise)."""
        ...

    async def media_type(self, digest: str) -> str | None:
        """A stored manifest's media type where the store keeps it (the bucket); else ``None``."""
        ...

    def writer(self, digest: str) -> BlobWriter:
        """A staging file for ``digest`` (hashes as it is written)."""
        ...

    async def commit(self, writer: BlobWriter) -> None:
        """Make verified content visible under its digest (after ``writer.verify``)."""
        ...

    def touch(self, digest: str) -> None:
        """Stored content was used (the disk budget keeps recently used content)."""
        ...

    async def locate(self, digest: str) -> LocalFile | Redirect | None:
        """How to hand stored content to a client without copying it here: a local file, a
        redirect, or ``None``: stream it with ``read_range``."""
        ...

    def read_range(self, digest: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Bytes ``start`` .. ``end`` (exclusive) of stored content; ``FileNotFoundError`` when it
        is gone, another ``OSError`` when the store cannot be read."""
        ...

    async def fill(self, fill: Fill, fetch: FetchFromUpstream) -> None:
        """Fill ``fill`` for this replica: from the upstream with ``fetch``, or, where replicas share
        the store, from another replica's finished fill (one upstream fetch per blob)."""
        ...

    async def ping(self) -> str:
        """Empty when the store can be used, else the reason."""
        ...

    def describe(self) -> dict[str, Any] | None:
        """What ``/readyz`` says about a store other than the cache directory (``None``: nothing)."""
        ...

    async def close(self) -> None: ...


def clear_staging(tmp: Path) -> None:
    """Make the staging folder and empty it: fills a crash interrupted are never kept or uploaded."""
    tmp.mkdir(parents=True, exist_ok=True)
    for leftover in tmp.iterdir():
        try:
            leftover.unlink(missing_ok=True)
        except OSError:  # a read-only cache: nothing can be filled, leftovers are never served
            break
