"""Staging: content being written to a local temporary file while it is hashed.

``BlobWriter`` is one staging file: written unbuffered (readers of the file see each byte as soon
as ``write`` returns), hashed as it goes, and only renamed or uploaded by the store after
``verify`` found the digest right.  ``Fill`` is a blob's staging file while an upstream fetch
writes it, with the progress every waiting client (and a store that uploads as it goes) follows.
Both are the same for every backend.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from proxy.errors import DigestMismatch
from proxy.oci.digests import Hasher


class BlobWriter:
    """Write to a temporary file while hashing; ``commit`` verifies and renames into place."""

    def __init__(self, digest: str, tmp: Path, final: Path | None,
                 on_added: Callable[[str, int], None] | None = None) -> None:  # fmt: skip
        """``final``: where ``persist`` renames the file (``None``: the store uploads it instead)."""
        self.digest = digest
        self.final = final
        self.on_added = on_added
        self._hash = Hasher(digest)
        fd, name = tempfile.mkstemp(dir=tmp, prefix=self._hash.expected[:16] + ".")
        self.tmp_path = Path(name)
        self._fd: int | None = fd
        self.written = 0
        self.committed = False

    def write(self, chunk: bytes | memoryview) -> None:
        """Unbuffered: once this returns, readers of the temporary file see the bytes."""
        self.store(chunk)
        self.check(chunk)

    def store(self, chunk: bytes | memoryview) -> None:
        """``write`` without the hash: a fill worker hashes on another thread (``check``, same
        order).  Each runs in one thread at a time; ``os.write`` and the hash release the GIL."""
        assert self._fd is not None
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]
        self.written += len(chunk)

    def check(self, chunk: bytes | memoryview) -> None:
        """Hash the next piece of content (every byte, in order, before ``verify``)."""
        self._hash.update(chunk)

    def verify(self) -> None:
        """Check the digest of everything written; on a mismatch nothing is kept."""
        if not self._hash.matches():
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

    def commit(self, *, checked: bool = False) -> Path:
        """``verify``, ``persist`` and ``announce`` in one go (small content).

        ``checked``: the caller verified the content against its digest already (a signed
        schema 1 manifest, whose digest covers its payload rather than these bytes).
        """
        if not checked:
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


@dataclass(eq=False)
class Fill:
    """A blob being fetched into its staging file, followed by every client that wants it."""

    digest: str
    writer: BlobWriter
    size: int | None = None
    """From the upstream's Content-Length, once its headers arrived."""
    written: int = 0
    ok: bool = False
    """The digest matched: every byte may go to clients (the file may still be being synced)."""
    finished: bool = False
    error: BaseException | None = None
    already_stored: bool = False
    """The bytes came from the store itself (another replica's fill): verified, not stored again."""
    on_done: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Run after the fill is committed or dropped (a shared store's lease is released here)."""
    headers_ready: asyncio.Event = field(default_factory=asyncio.Event)
    _pulse: asyncio.Event = field(default_factory=asyncio.Event)
    """Set (and replaced) on every change readers wait for: more bytes, the verdict, the end."""

    def __post_init__(self) -> None:
        # Held for as long as anyone holds the fill: the temporary file may be renamed (files)
        # or removed after its upload (a bucket) while clients still read from it.
        self._fd = os.open(self.writer.tmp_path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)

    def open_reader(self) -> int:
        """A descriptor of the fill's file with its own offset (sendfile's fallback seeks)."""
        return os.open(f"/proc/self/fd/{self._fd}", os.O_RDONLY)

    def reached(self, total: int) -> None:
        """``total`` bytes are in the staging file now; event loop thread."""
        self.written = total
        self._wake()

    def progress_reporter(self) -> Callable[[int], None]:
        """``reached``, safe to call from any thread (a fill worker's): run on the loop.

        Calls that come faster than the loop runs them are folded into one (the latest total
        wins): the worker never waits for the loop, and the loop is woken once per batch.
        """
        loop = asyncio.get_running_loop()
        latest = 0
        queued = False

        def publish() -> None:
            nonlocal queued
            queued = False
            self.reached(latest)

        def report(total: int) -> None:
            nonlocal latest, queued
            latest = total
            if not queued:
                queued = True
                loop.call_soon_threadsafe(publish)

        return report

    def advance(self, nbytes: int) -> None:
        self.reached(self.written + nbytes)

    def verified(self) -> None:
        self.ok = True
        self._wake()

    def finish(self, error: BaseException | None) -> None:
        self.error = error
        self.finished = True
        self.headers_ready.set()
        self._wake()

    async def wait_beyond(self, offset: int) -> None:
        while not (self.written > offset or self.finished or self.ok):
            await self._pulse.wait()

    def _wake(self) -> None:
        pulse, self._pulse = self._pulse, asyncio.Event()
        pulse.set()
