"""The content store: content-addressed files, written only after their digest is verified.

Layout under the cache directory: ``blobs/<algorithm>/<first two hex>/<hex>`` for blobs and
manifests alike (a manifest is content too; its media type lives in the tag index), and
``tmp/`` for fills in progress.  A writer hashes as it writes to a temporary file and renames
it into place only if the digest matches, so a reader never sees partial or wrong bytes under
a digest's name, and a crash leaves at most a temporary file, removed at the next start.

``Store`` is what the services see; ``ContentStore`` (files, the default) and
``proxy.storage.s3.store.S3Store`` (a shared bucket) implement it.  Both stage fills in a local temporary
file, so hashing, single-flight and streaming to waiting clients are the same for both; they
differ in where verified content goes (``commit``) and where it is read from.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from proxy.errors import DigestMismatch
from proxy.oci.names import check_digest


class Store(Protocol):
    shared: bool
    """True when content lives outside this process's cache directory (a bucket other replicas use)."""
    tmp: Path
    """Local staging folder for fills."""
    on_added: Callable[[str, int], None] | None
    on_used: Callable[[str], None] | None

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

    def writer(self, digest: str) -> BlobWriter: ...

    async def commit(self, writer: BlobWriter) -> None:
        """Make verified content visible under its digest (after ``writer.verify``)."""
        ...

    def touch(self, digest: str) -> None: ...


def clear_staging(tmp: Path) -> None:
    """Make the staging folder and empty it: fills a crash interrupted are never kept or uploaded."""
    tmp.mkdir(parents=True, exist_ok=True)
    for leftover in tmp.iterdir():
        try:
            leftover.unlink(missing_ok=True)
        except OSError:  # a read-only cache: nothing can be filled, leftovers are never served
            break


class ContentStore:
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
        self.tmp = root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        if clean_tmp:
            clear_staging(self.tmp)
        else:
            self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        algorithm, _, encoded = check_digest(digest).partition(":")
        return self.blobs / algorithm / encoded[:2] / encoded

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int | None:
        try:
            return self.path(digest).stat().st_size
        except OSError:
            return None

    def read(self, digest: str, *, touch: bool = True) -> bytes | None:
        try:
            data = self.path(digest).read_bytes()
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
        self.put(digest, data)

    async def media_type(self, digest: str) -> str | None:
        return None  # the tag index keeps manifests' media types for a local cache

    async def commit(self, writer: BlobWriter) -> None:
        await asyncio.to_thread(writer.persist)

    def put(self, digest: str, data: bytes) -> None:
        """Store small content (a manifest, a config) after checking its digest."""
        with self.writer(digest) as w:
            w.write(data)
            w.commit()


class BlobWriter:
    """Write to a temporary file while hashing; ``commit`` verifies and renames into place."""

    def __init__(self, digest: str, tmp: Path, final: Path | None,
                 on_added: Callable[[str, int], None] | None = None) -> None:  # fmt: skip
        """``final``: where ``persist`` renames the file (``None``: the store uploads it instead)."""
        self.digest = digest
        self.final = final
        self.on_added = on_added
        algorithm, _, self._expected = digest.partition(":")
        self._hash = hashlib.new(algorithm)
        fd, name = tempfile.mkstemp(dir=tmp, prefix=self._expected[:16] + ".")
        self.tmp_path = Path(name)
        self._fd: int | None = fd
        self.written = 0
        self.committed = False

    def write(self, chunk: bytes) -> None:
        """Unbuffered: once this returns, readers of the temporary file see the bytes."""
        assert self._fd is not None
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]
        self._hash.update(chunk)
        self.written += len(chunk)

    def verify(self) -> None:
        """Check the digest of everything written; on a mismatch nothing is kept."""
        if self._hash.hexdigest() != self._expected:
            self.abort()
            raise DigestMismatch(f"content does not match {self.digest} ({self.written} bytes received)")

    def persist(self) -> Path:
        """fsync and rename into place (after ``verify``); may run in a worker thread."""
        assert self._fd is not None and self.final is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        final = self.final
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp_path, final)
        self.committed = True
        return final

    def announce(self) -> None:
        """Tell the store's listener (the disk budget) about the new content; event loop thread."""
        if self.on_added is not None:
            self.on_added(self.digest, self.written)

    def commit(self) -> Path:
        """``verify``, ``persist`` and ``announce`` in one go (small content)."""
        self.verify()
        final = self.persist()
        self.announce()
        return final

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.abort()
