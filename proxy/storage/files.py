"""The file store (the default): content-addressed files under the cache directory.

Layout: ``blobs/<algorithm>/<first two hex>/<hex>`` for blobs and manifests alike (a manifest is
content too; its media type lives in the tag index), and ``tmp/`` for fills in progress.  A
writer hashes as it writes to a temporary file and renames it into place only if the digest
matches, so a reader never sees partial or wrong bytes under a digest's name, and a crash leaves
at most a temporary file, removed at the next start.  Stored content is handed to clients as the
file itself (``sendfile``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

from proxy.errors import DigestMismatch
from proxy.oci.digests import matches
from proxy.oci.names import check_digest
from proxy.sizes import CHUNK
from proxy.storage.base import FetchFromUpstream, LocalFile, Redirect, clear_staging
from proxy.storage.staging import BlobWriter, Fill


class FileStore:
    """Files under the cache directory; served with sendfile from ``path``."""

    shared = False

    def __init__(self, root: Path, *, clean_tmp: bool = True) -> None:
        """``clean_tmp``: drop fills a crash left behind (the server's start; not the cache CLI's)."""
        self.root = root
        self.on_added: Callable[[str, int], None] | None = None
        """Called with (digest, size) after content is committed (the disk budget listens)."""
        self.on_used: Callable[[str], None] | None = None
        """Called with a digest whenever stored content is read or served."""
        self.blobs = root / "blobs"
        self._blobs = str(self.blobs)
        self.tmp = root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        if clean_tmp:
            clear_staging(self.tmp)
        else:
            self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return Path(self._file(digest))

    def _file(self, digest: str) -> str:
        """The file's path as a string: ``size`` and ``read`` run once per part of every image
        ``cache ls`` lists (300k times at 100k images), where building ``Path`` objects cost 8
        of its 10 s."""
        algorithm, _, encoded = check_digest(digest).partition(":")
        return f"{self._blobs}/{algorithm}/{encoded[:2]}/{encoded}"

    def shards(self) -> list[str]:
        """The directories content is kept in, as digest prefixes (``sha256:ab``)."""
        return [f"{a.name}:{p.name}" for a in _subdirectories(self.blobs) for p in _subdirectories(a)]

    def shard(self, prefix: str) -> list[tuple[str, int, float]]:
        """The files of one directory as (digest, size, modification time), for the disk
        budget's reconciliation: one ``stat`` per file (``scandir`` knows directories from files)."""
        algorithm, _, head = prefix.partition(":")
        found = []
        try:
            with os.scandir(f"{self._blobs}/{algorithm}/{head}") as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                            stat = entry.stat(follow_symlinks=False)
                            found.append((f"{algorithm}:{entry.name}", stat.st_size, stat.st_mtime))
        except (FileNotFoundError, NotADirectoryError):
            pass
        return found

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def size(self, digest: str) -> int | None:
        try:
            return os.stat(self._file(digest)).st_size
        except OSError:
            return None

    def read(self, digest: str, *, touch: bool = True) -> bytes | None:
        try:
            with open(self._file(digest), "rb") as f:
                data = f.read()
        except OSError:
            return None
        if touch:
            self.touch(digest)
        return data

    def touch(self, digest: str) -> None:
        if self.on_used is not None:
            self.on_used(digest)

    def writer(self, digest: str) -> BlobWriter:
        digest = check_digest(digest)
        return BlobWriter(digest, self.tmp, self.path(digest), self.on_added)

    async def stat(self, digest: str) -> int | None:
        return self.size(digest)

    async def get(self, digest: str) -> bytes | None:
        return self.read(digest)

    async def save(self, digest: str, data: bytes, media_type: str = "") -> None:
        """Store small content (a manifest, a config) after checking its digest."""
        if not matches(check_digest(digest), data, media_type):
            raise DigestMismatch(f"content does not match {digest}")
        with self.writer(digest) as w:
            await asyncio.to_thread(_write_and_persist, w, data)  # fsync: never on the event loop
            w.announce()

    async def media_type(self, digest: str) -> str | None:
        return None  # the tag index keeps manifests' media types for a local cache

    async def commit(self, writer: BlobWriter) -> None:
        await asyncio.to_thread(writer.persist)

    async def locate(self, digest: str) -> LocalFile | Redirect | None:
        return LocalFile(self.path(digest))

    async def read_range(self, digest: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        with self.path(digest).open("rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    async def fill(self, fill: Fill, fetch: FetchFromUpstream) -> None:
        await fetch(fill)  # one process: the single-flight of ``Fills`` is all the coordination needed

    async def ping(self) -> str:
        return ""

    def describe(self) -> dict[str, Any] | None:
        return None  # /readyz reports the cache directory itself

    async def close(self) -> None:
        pass


def _subdirectories(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as entries:
            return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _write_and_persist(writer: BlobWriter, data: bytes) -> None:
    writer.write(data)
    writer.persist()
