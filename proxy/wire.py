"""Blocking HTTP/1.1 for fill workers: one request on its own connection, its body read straight
into the worker's buffer.

Why not the event loop's aiohttp: a cold blob's bytes are the one thing that must not pass
through the loop.  Read there, every byte costs the loop a socket read, a Python chunk, a hash
update and a write, and one core caps a fill (and everything else the loop serves meanwhile).
A worker thread doing blocking ``recv_into`` into a reusable buffer, then ``sha256`` and
``os.write`` of it, releases the GIL in all three, so the fill runs on another core beside the
loop.  The standard library's ``http.client`` does the protocol (status line, headers, chunked
bodies, TLS with certificate checks, ``CONNECT`` tunnels); this module adds only the reading
pattern: read what the socket has, hand it over in large pieces, and never sit on bytes it
already has while the socket is idle (a slow upstream's clients still see every byte as it
comes).

Decisions (auth, redirects, retries, which errors mean what) stay with the caller, on the loop
(``proxy.registry.client`` for upstreams, ``proxy.storage.s3.peers`` for another replica of the
tier): the worker is asked for one request at a time and reports the status and headers it got.

May import: proxy.sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import mmap
import queue
import select
import socket
import ssl
import threading
from base64 import b64encode
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from multidict import CIMultiDict

from proxy.sizes import MiB

PIECE = 1 * MiB
"""The largest piece ``pump`` hands over at once (measured: see docs/benchmark.md)."""
MIN_PIECE = 64 * 1024
RING = 4
"""Pieces per fill: the reader may run this many pieces ahead of the hash."""
BUDGET = 16 * MiB
"""Buffer memory shared by all fills at once: a fill gets ``PIECE`` pieces while the budget
lasts, smaller ones (down to ``MIN_PIECE``) when other fills hold it, so memory stays flat
however many fills run.  Buffers are anonymous mappings, returned to the system when a fill
ends (not kept by the allocator: peak memory is what fills hold at once)."""

_in_use = 0
_in_use_lock = threading.Lock()


@dataclass(frozen=True)
class Dial:
    """How to reach an upstream from a worker thread."""

    context: Callable[[], ssl.SSLContext]
    """For https targets: the system's CAs (and the upstream's ``ca``), verification on.  Asked
    for only when a target is https: building one reads the system's CAs (about 20 ms), which a
    plain-http upstream's first fill should not wait for."""
    connect_timeout: float
    read_timeout: float
    """Longest wait for any byte once connected (an upstream that stalls is cut, as on the loop)."""
    proxy: str | None = None
    """An ``http://`` forward proxy: ``CONNECT`` tunnels for https, absolute-form for http."""


class WireAnswer:
    """An upstream's answer whose body has not been read yet."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._conn = conn
        self._resp = resp
        self.status = resp.status
        self.headers: CIMultiDict[str] = CIMultiDict(resp.getheaders())
        self.content_length: int | None = resp.length if not resp.chunked else None
        self._left = self.content_length
        sock = conn.sock
        self._sock: socket.socket | None = sock
        self._poll = select.poll()
        if sock is not None:
            self._poll.register(sock, select.POLLIN)

    def readinto(self, buffer: memoryview) -> int:
        """Some bytes of the body (0 at its end): at most one socket read."""
        if self._resp.chunked:
            data = self._resp.read1(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        want = buffer if self._left is None else buffer[: self._left]
        if not want or self._resp.fp is None:
            return 0
        n = self._resp.fp.readinto1(want)
        if self._left is not None:
            self._left -= n
        return n

    def idle(self) -> bool:
        """Nothing more can be read right now without waiting for the network."""
        sock = self._sock
        if sock is None:
            return True
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        return not self._poll.poll(0)

    def abort(self) -> None:
        """Cut the connection: a blocked read in the worker returns at once (a shutdown wakes it)."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        """Close the connection (one request per connection: nothing is left to reuse)."""
        self._resp.close()
        self._conn.close()


def open_request(method: str, url: str, headers: dict[str, str], dial: Dial) -> WireAnswer:
    """Send one request and read the answer's status and headers; blocking (a worker thread).

    Raises ``OSError`` (unreachable, timeout, TLS) or ``http.client.HTTPException``.
    """
    target = urlsplit(url)
    host, port = target.hostname or "", target.port or (443 if target.scheme == "https" else 80)
    path = target.path + (f"?{target.query}" if target.query else "")
    sent = dict(headers)
    if dial.proxy:
        via = urlsplit(dial.proxy)
        proxy_auth = {}
        if via.username:
            login = f"{unquote(via.username)}:{unquote(via.password or '')}".encode()
            proxy_auth["Proxy-Authorization"] = "Basic " + b64encode(login).decode()
        conn = _connection(target.scheme, via.hostname or "", via.port or 80, dial)
        if target.scheme == "https":
            conn.set_tunnel(host, port, headers=proxy_auth)  # the proxy carries an encrypted tunnel
        else:
            path = url  # absolute-form: the proxy forwards it
            sent.update(proxy_auth)
    else:
        conn = _connection(target.scheme, host, port, dial)
    try:
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(dial.read_timeout)
        conn.request(method, path, headers=sent)
        resp = conn.getresponse()
    except BaseException:
        conn.close()
        raise
    return WireAnswer(conn, resp)


async def open_on(workers: Executor, method: str, url: str, headers: dict[str, str], dial: Dial) -> WireAnswer:
    """``open_request`` on a worker of ``workers``, awaited from the event loop.  Cancelled, the
    answer the worker still opens is closed when it has (no connection is left behind)."""
    opened = asyncio.get_running_loop().run_in_executor(
        workers, functools.partial(open_request, method, url, headers, dial)
    )
    try:
        return await asyncio.shield(opened)
    except asyncio.CancelledError:
        opened.add_done_callback(_release_when_opened)
        raise


def _release_when_opened(opened: asyncio.Future[WireAnswer]) -> None:
    if not opened.cancelled() and opened.exception() is None:
        opened.result().release()


async def pump_on(workers: Executor, answer: WireAnswer, store: Callable[[memoryview], None],
                  check: Callable[[memoryview], None], progress: Callable[[int], None]) -> int:  # fmt: skip
    """``pump`` on a worker of ``workers``, awaited from the event loop.  Cancelled, the worker is
    stopped (its socket shut down) and waited for: ``store`` and ``check`` are never called after."""
    stop = threading.Event()
    copying = asyncio.get_running_loop().run_in_executor(workers, pump, answer, store, check, progress, stop)
    try:
        return await asyncio.shield(copying)
    except asyncio.CancelledError:
        stop.set()
        answer.abort()
        await asyncio.wait([copying])
        raise


def piece_size(in_use: int) -> int:
    """The piece size of a fill starting while other fills hold ``in_use`` bytes of buffers."""
    return max(MIN_PIECE, min(PIECE, (BUDGET - in_use) // RING // MIN_PIECE * MIN_PIECE))


def _connection(scheme: str, host: str, port: int, dial: Dial) -> http.client.HTTPConnection:
    if scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=dial.connect_timeout, context=dial.context())
    return http.client.HTTPConnection(host, port, timeout=dial.connect_timeout)


def pump(answer: WireAnswer, store: Callable[[memoryview], None], check: Callable[[memoryview], None],
         progress: Callable[[int], None], stop: threading.Event) -> int:  # fmt: skip
    """Copy the body in pieces as large as the socket allows; blocking (a worker thread).

    Each piece is what could be read without waiting (up to ``PIECE`` bytes): a fast upstream is
    handed over in large pieces (few calls, few wake-ups of the loop), a slow one as it arrives.
    ``store`` gets each piece here, then ``progress`` the running total; ``check`` (the hash)
    gets the same pieces in order on a helper thread, so that hashing one piece overlaps reading
    and storing the next (they are the two halves of the work; the ring of ``RING`` buffers
    bounds how far the reader runs ahead; ``piece_size`` how large they are).  Everything
    ``check`` was given is done when this returns.  Returns the total; raises ``OSError`` when
    the connection fails or ``stop`` is set, and what ``check`` raised.
    """
    global _in_use
    with _in_use_lock:
        piece = piece_size(_in_use)
        _in_use += piece * RING
    free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
    for _ in range(RING):  # unmapped when the last view of it goes, as this returns
        free.put(memoryview(mmap.mmap(-1, piece)))
    checking: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
    failed: list[BaseException] = []

    def check_pieces() -> None:
        while (item := checking.get()) is not None:
            try:
                if not failed:
                    check(item[0][: item[1]])
            except BaseException as exc:  # reported by the reader; the ring keeps turning
                failed.append(exc)
            finally:
                free.put(item[0])

    checker: threading.Thread | None = None
    total = 0
    try:
        while True:
            buffer = free.get()
            filled = _read_piece(answer, buffer)
            if stop.is_set():
                raise ConnectionAbortedError("the fill was stopped")
            if not filled:
                break
            store(buffer[:filled])
            total += filled
            progress(total)
            if checker is None:
                checker = threading.Thread(target=check_pieces, name="fill-check", daemon=True)
                checker.start()
            checking.put((buffer, filled))
    finally:
        if checker is not None:
            checking.put(None)
            checker.join()
        with _in_use_lock:
            _in_use -= piece * RING
    if failed:
        raise failed[0]
    return total


def _read_piece(answer: WireAnswer, buffer: memoryview) -> int:
    """Read into ``buffer`` until it is full, the body ended, or the socket has nothing more now."""
    filled = 0
    while filled < len(buffer):
        n = answer.readinto(buffer[filled:])
        if n == 0:
            break
        filled += n
        if answer.idle():
            break
    return filled
