"""A relay thread: a ``selectors`` loop over its connections, each a small state machine that
moves bytes both ways until every direction waits (handshake, the client's bytes to the loop,
the loop's bytes and file jobs to the client), and the ``Link`` the loop holds to hand it a file."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger("platproxy.tls")

CHUNK = 256 * 1024
"""A file job's read (and TLS write) size: measured best against 64 KiB, 1 MiB (and 16 KiB writes)."""
UP_LIMIT = 256 * 1024
"""Decrypted client bytes held before the relay stops reading the client (requests are small)."""


@dataclass(eq=False)
class _Job:
    """A file range for the relay thread to send; ``done`` is resolved on the loop."""

    fd: int  # a duplicate, closed by the relay when the job ends
    offset: int
    count: int
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[None]
    ready: bool = False  # every byte the loop wrote before the job has been read
    buffer: bytearray | None = None
    cancelled: bool = False

    def finish(self, error: BaseException | None) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self.loop.call_soon_threadsafe(_settle, self.done, error)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if not done.done():
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


@dataclass(eq=False)
class _Connection:
    tls: ssl.SSLSocket
    peer: Any
    deadline: float
    plain: socket.socket | None = None
    up: bytearray = field(default_factory=bytearray)
    down: memoryview | None = None
    tls_eof: bool = False
    plain_eof: bool = False
    plain_shut: bool = False
    job: _Job | None = None
    pending_jobs: collections.deque[_Job] = field(default_factory=collections.deque)
    tls_quiet: bool = False
    """The last read of the client found nothing, and its socket has not been readable since."""
    interest: dict[int, int] = field(default_factory=dict)


class Link:
    """What the loop's side holds of one relayed connection: the way to hand the relay a file."""

    def __init__(self, worker: Worker, connection: _Connection) -> None:
        self._worker = worker
        self._connection = connection

    def send_file(self, fd: int, offset: int, count: int) -> asyncio.Future[None]:
        """Have the relay thread send ``count`` bytes of ``fd`` from ``offset`` (after every byte
        already written to the socketpair).  The future fails with ``ConnectionResetError`` when
        the client left and ``EOFError`` when the file is shorter; cancelling it aborts the
        connection (a body must never end short and clean)."""
        loop = asyncio.get_running_loop()
        job = _Job(os.dup(fd), offset, count, loop, loop.create_future())
        job.done.add_done_callback(lambda f: self._cancelled(job) if f.cancelled() else None)
        self._worker.post(lambda: self._worker.start_job(self._connection, job))
        return job.done

    def _cancelled(self, job: _Job) -> None:
        job.cancelled = True
        self.abort()

    def abort(self) -> None:
        self._worker.post(lambda: self._worker.drop(self._connection, "aborted by the server"))


Attach = Callable[[socket.socket, dict[str, Any], Link], None]


class Worker(threading.Thread):
    """One relay thread: a selector over its connections' TLS sockets and socketpair ends."""

    def __init__(self, name: str, context: ssl.SSLContext, handshake_timeout: float, attach: Attach) -> None:
        super().__init__(name=name, daemon=True)
        self.context, self.handshake_timeout, self.attach = context, handshake_timeout, attach
        self.selector = selectors.DefaultSelector()
        self.inbox: collections.deque[Callable[[], None]] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.connections: set[_Connection] = set()
        self.stopping = False

    def post(self, action: Callable[[], None]) -> None:
        self.inbox.append(action)
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def adopt(self, sock: socket.socket, peer: Any) -> None:
        """On the relay thread: a new client connection, handshake first."""
        try:
            tls = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError):
            sock.close()
            return
        connection = _Connection(tls, peer, time.monotonic() + self.handshake_timeout)
        self.connections.add(connection)
        self._progress(connection)

    def run(self) -> None:
        while not (self.stopping and not self.connections):
            deadlines = [c.deadline for c in self.connections if c.plain is None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for key, mask in self.selector.select(min(timeout, 1.0) if timeout is not None else 1.0):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError, OSError):
                        self._wake_r.recv(4096)
                elif key.data in self.connections:
                    if key.fileobj is key.data.tls and mask & selectors.EVENT_READ:
                        key.data.tls_quiet = False
                    self._guarded(self._progress, key.data)
            while self.inbox:
                self._guarded(self.inbox.popleft())
            now = time.monotonic()
            for connection in [c for c in self.connections if c.plain is None and c.deadline <= now]:
                self.drop(connection, "the TLS handshake timed out")
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _guarded(self, action: Callable[..., None], connection: _Connection | None = None) -> None:
        """A fault in one connection's step (a bug) closes that connection, never the thread
        that relays all the others."""
        try:
            action(*([connection] if connection is not None else []))
        except Exception as exc:
            log.warning("TLS relay error; connection closed", error=f"{type(exc).__name__}: {exc}"[:300])
            if connection is not None:
                with contextlib.suppress(Exception):
                    self.drop(connection, "relay error")

    def stop(self) -> None:
        def all_gone() -> None:
            self.stopping = True
            for connection in list(self.connections):
                self.drop(connection, "")

        self.post(all_gone)

    def start_job(self, connection: _Connection, job: _Job) -> None:
        if connection not in self.connections:
            job.finish(ConnectionResetError("the client went away"))
            return
        connection.pending_jobs.append(job)
        self._progress(connection)

    def drop(self, connection: _Connection, why: str) -> None:
        """Close both sides at once (no close_notify: an aborted body must not look whole)."""
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        for sock in (connection.tls, connection.plain):
            if sock is not None:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self.selector.unregister(sock)
                sock.close()
        for job in ([connection.job] if connection.job else []) + list(connection.pending_jobs):
            job.finish(ConnectionResetError(f"the client went away ({why})" if why else "the server stopped"))
        connection.job = None
        connection.pending_jobs.clear()
        if why and connection.plain is None:
            log.debug("TLS connection closed before a request", address=str(connection.peer), reason=why)

    # -- the state machine: every step that can move without waiting, then what to wait for ----

    def _progress(self, c: _Connection) -> None:
        try:
            if c.plain is None and not self._handshake(c):
                return
            waits = self._pump(c)
        except (ssl.SSLError, OSError) as exc:
            self.drop(c, _reason(exc))
            return
        if c not in self.connections:
            return
        if waits is None:  # both sides are done
            self._close(c)
            return
        self._watch(c, waits)

    def _handshake(self, c: _Connection) -> bool:
        try:
            c.tls.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(c, {c.tls.fileno(): selectors.EVENT_READ})
            return False
        except ssl.SSLWantWriteError:
            self._watch(c, {c.tls.fileno(): selectors.EVENT_WRITE})
            return False
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        c.plain = ours
        extra = {"peername": c.peer, "sockname": c.tls.getsockname(), "sslcontext": self.context,
                 "peercert": c.tls.getpeercert(), "cipher": c.tls.cipher()}  # fmt: skip
        self.attach(theirs, extra, Link(self, c))
        return True

    def _pump(self, c: _Connection) -> dict[int, int] | None:
        """Move bytes both ways until every direction waits; what each waits on, or None when closed."""
        assert c.plain is not None
        tls, plain = c.tls.fileno(), c.plain.fileno()
        while True:
            waits: dict[int, int] = {}
            moved = False
            # the client's bytes, decrypted, to the loop
            if c.tls_quiet:  # nothing arrived since the last try: not worth a read (and its exception)
                waits[tls] = selectors.EVENT_READ
            elif not c.tls_eof and len(c.up) < UP_LIMIT:
                try:
                    data = c.tls.recv(65536)
                    if data:
                        c.up += data
                        moved = True
                    else:
                        c.tls_eof = True
                except ssl.SSLWantReadError:
                    c.tls_quiet = True
                    waits[tls] = waits.get(tls, 0) | selectors.EVENT_READ
                except ssl.SSLWantWriteError:
                    waits[tls] = waits.get(tls, 0) | selectors.EVENT_WRITE
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
                    c.tls_eof = True
            if c.up:
                try:
                    sent = c.plain.send(c.up)
                    del c.up[:sent]
                    moved = True
                except BlockingIOError:
                    waits[plain] = waits.get(plain, 0) | selectors.EVENT_WRITE
            elif c.tls_eof and not c.plain_shut:
                c.plain_shut = True
                with contextlib.suppress(OSError):
                    c.plain.shutdown(socket.SHUT_WR)
            # the loop's bytes, then any file job, encrypted to the client
            if c.down is None:
                moved |= self._fill_down(c, waits, plain)
            if c.down is not None:
                try:
                    sent = c.tls.send(c.down)
                    c.down = c.down[sent:] if sent < len(c.down) else None
                    moved = True
                except ssl.SSLWantWriteError:
                    waits[tls] = waits.get(tls, 0) | selectors.EVENT_WRITE
                except ssl.SSLWantReadError:
                    waits[tls] = waits.get(tls, 0) | selectors.EVENT_READ
                if c.down is None and c.job is not None and c.job.count == 0:
                    c.job.finish(None)
                    c.job = None
                    moved = True
            if c.plain_eof and c.down is None and c.job is None and not c.pending_jobs:
                return None
            if not moved:
                return waits

    def _fill_down(self, c: _Connection, waits: dict[int, int], plain: int) -> bool:
        """Find the next bytes for the client: what the loop wrote, or the next piece of a job."""
        assert c.plain is not None
        if c.job is None and c.pending_jobs:
            c.job = c.pending_jobs.popleft()
        job = c.job
        if job is not None and job.cancelled:
            raise ConnectionAbortedError("the server gave up on a file it was sending")
        if job is None or not job.ready:
            try:
                data = c.plain.recv(CHUNK)
            except BlockingIOError:
                if job is not None:
                    job.ready = True  # the headers before it have all been read
                    return True
                waits[plain] = waits.get(plain, 0) | selectors.EVENT_READ
                return False
            if not data:
                c.plain_eof = True
                if job is not None:
                    raise ConnectionAbortedError("the server closed the connection during a file")
                return True
            c.down = memoryview(data)
            return True
        if job.count == 0:
            return False
        if job.buffer is None:
            job.buffer = bytearray(min(CHUNK, job.count))
        view = memoryview(job.buffer)[: min(CHUNK, job.count)]
        n = os.preadv(job.fd, [view], job.offset)
        if n == 0:
            error = EOFError(f"the file ended at {job.offset} before {job.offset + job.count}")
            job.finish(error)
            c.job = None
            raise ConnectionAbortedError(str(error))
        job.offset += n
        job.count -= n
        c.down = view[:n]
        return True

    def _watch(self, c: _Connection, waits: dict[int, int]) -> None:
        for sock in (c.tls, c.plain):
            if sock is None:
                continue
            fd = sock.fileno()
            want = waits.get(fd, 0)
            had = c.interest.get(fd, 0)
            if want == had:
                continue
            if not had:
                self.selector.register(sock, want, c)
            elif not want:
                self.selector.unregister(sock)
            else:
                self.selector.modify(sock, want, c)
            c.interest[fd] = want

    def _close(self, c: _Connection) -> None:
        """The loop closed its side and everything was sent: a polite TLS close."""
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            c.tls.unwrap()
        self.drop(c, "")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__
