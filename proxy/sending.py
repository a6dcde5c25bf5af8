"""Zero-copy sends to a client's socket on worker threads, so the event loop never does the copying.

Why: a blob is sent with ``sendfile``, and for the streams of a cold blob (every waiting client
fed from the growing staging file) almost all of a busy proxy's CPU is the kernel copying inside
``sendfile``.  Called on the event loop (asyncio's ``loop.sendfile``), every byte for every client
is copied on one core while the other cores wait; nginx, the floor for sending the same streams,
copies on as many workers as it has.  Here each step of a send (``sendfile`` until the socket is
full, the range is sent, or ``STEP`` bytes went) runs on a small pool of threads: ``sendfile``
releases the GIL, so the copies of many clients run on every core, and the loop only waits for
sockets to become writable again (a slow client holds no thread: a step never waits).

The thread writes to a duplicate of the socket's descriptor, so that a transport closed meanwhile
(the server stopping) can never have its descriptor number reused under a running step; the
loop waits for writability on that duplicate, which the transport has not registered.  The
transport's own write buffer must be empty first (headers already on the wire): the caller
drains it, and ``send_file_range`` refuses (``NotImplementedError``, before sending anything)
when it is not, as it does for a TLS transport of the loop's own, whose bytes the loop must
encrypt.  Over the client listener's TLS, the connection's relay thread (``proxy.tlsrelay``)
reads and encrypts the file itself.

May import: proxy.tlsrelay.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from proxy.tlsrelay import Link

STEP = 16 * 2**20
"""Most bytes one step sends before its thread goes back to the pool (fairness between clients)."""
THREADS = 32
"""Copying threads, started as needed.  Measured (32 cold clients of a 256 MiB blob on 2 cores,
against nginx sending the same streams warm): 1 thread 1.35x nginx's time, 2: 1.02-1.07x, 4:
1.01x, 8: 0.99x, 16: 0.94x, 32: 0.93x, 64: 0.94x.  Steps never wait, so more threads than cores
is not about blocking: with fewer, the clients' steps queue behind each other between wake-ups."""

_pool: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(THREADS, "send")
    return _pool


def _send_step(out: int, source: int, offset: int, count: int) -> tuple[int, bool]:
    """Send up to ``count`` bytes of ``source`` from ``offset``, never waiting: (sent, socket full)."""
    sent = 0
    while sent < count:
        try:
            n = os.sendfile(out, source, offset + sent, count - sent)
        except BlockingIOError:
            return sent, True
        except BrokenPipeError as exc:  # one way the client leaving shows: the same as a reset
            raise ConnectionResetError(str(exc)) from None
        if n == 0:
            raise EOFError(f"the file ended at {offset + sent} before {offset + count}")
        sent += n
    return sent, False


async def send_file_range(transport: asyncio.Transport, source: int, offset: int, count: int) -> AsyncIterator[int]:
    """Send ``count`` bytes of the file ``source`` from ``offset`` to ``transport``'s client,
    yielding the bytes sent after each step.

    Raises ``ConnectionResetError`` when the client left, ``EOFError`` when the file is shorter
    than asked, and ``NotImplementedError`` before sending anything where this path cannot be
    used (the loop's own TLS, a transport with unsent bytes, no socket): the caller then sends
    another way.
    """
    link = transport.get_extra_info("platproxy_tls_link")
    if link is not None:  # TLS on relay threads: the relay reads and encrypts the file itself
        async for sent in _send_relayed(link, transport, source, offset, count):
            yield sent
        return
    sock = transport.get_extra_info("socket")
    if sock is None or transport.get_extra_info("sslcontext") is not None:
        raise NotImplementedError("no plain socket to send to")
    if transport.get_write_buffer_size():
        raise NotImplementedError("the transport still has bytes to write")
    if transport.is_closing() or sock.fileno() < 0:  # the client left: the transport closed its socket
        raise ConnectionResetError("the client went away")
    loop = asyncio.get_running_loop()
    out = os.dup(sock.fileno())
    try:
        while count:
            if transport.is_closing():
                raise ConnectionResetError("the client went away")
            step = loop.run_in_executor(_threads(), _send_step, out, source, offset, min(count, STEP))
            try:
                sent, full = await asyncio.shield(step)
            except asyncio.CancelledError:
                await asyncio.wait([step])  # the thread stops within its step; then ``out`` may close
                raise
            offset += sent
            count -= sent
            if sent:
                yield sent
            if count and full:
                await _writable(loop, out)
    finally:
        os.close(out)


async def _send_relayed(link: Link, transport: asyncio.Transport, source: int, offset: int, count: int
                        ) -> AsyncIterator[int]:  # fmt: skip
    """A file range over a relayed TLS connection, in ``STEP`` jobs (progress, and a prompt stop)."""
    while transport.get_write_buffer_size():  # the headers must be in the socketpair before the file
        if transport.is_closing():
            raise ConnectionResetError("the client went away")
        await asyncio.sleep(0.001)
    while count:
        if transport.is_closing():
            raise ConnectionResetError("the client went away")
        step = min(count, STEP)
        await link.send_file(source, offset, step)
        offset += step
        count -= step
        yield step


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Wait until ``fd`` can take more bytes (or has failed: the next send says how)."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)
