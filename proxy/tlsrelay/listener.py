"""The listener: bound and accepted on the event loop, each connection handed to the next relay
thread, and each handshaken connection's plain end given to the application's protocol."""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any

import structlog

from proxy.tlsrelay.transport import Bridge
from proxy.tlsrelay.worker import Link, Worker

log = structlog.get_logger("platproxy.tls")


class TlsRelay:
    """The client listener's TLS: accepts on the loop, relays on ``threads`` threads."""

    def __init__(self, context: ssl.SSLContext, *, threads: int, handshake_timeout: float) -> None:
        self.context = context
        self._threads = threads
        self._handshake_timeout = handshake_timeout
        self._workers: list[Worker] = []
        self._listeners: list[socket.socket] = []
        self._next = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._factory: Callable[[], asyncio.Protocol] | None = None
        self._attaching: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, host: str | None, port: int, backlog: int, factory: Callable[[], asyncio.Protocol]) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._factory = factory
        infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self._listeners.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(backlog)
                sock.setblocking(False)
        except OSError:
            self.stop_accepting()
            raise
        self.port = self._listeners[0].getsockname()[1]
        for i in range(self._threads):
            worker = Worker(f"tls-{i}", self.context, self._handshake_timeout, self._attach)
            worker.start()
            self._workers.append(worker)
        for sock in self._listeners:
            loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, listener: socket.socket) -> None:
        assert self._loop is not None
        for _ in range(64):
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # out of descriptors: pause accepting, as asyncio's servers do
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                log.warning("not accepting TLS connections for a second", error=os.strerror(exc.errno))
                self._loop.remove_reader(listener.fileno())
                self._loop.call_later(1.0, self._loop.add_reader, listener.fileno(), self._accept, listener)
                return
            sock.setblocking(False)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # records go out as written
            worker = self._workers[self._next % len(self._workers)]
            self._next += 1
            worker.post(functools.partial(worker.adopt, sock, peer))

    def _attach(self, sock: socket.socket, extra: dict[str, Any], link: Link) -> None:
        """On a relay thread: give the loop the plain end of a connection whose handshake is done."""
        loop, factory = self._loop, self._factory
        assert loop is not None and factory is not None

        async def serve() -> None:
            try:
                await loop.connect_accepted_socket(lambda: Bridge(factory(), extra, link), sock)
            except OSError:
                sock.close()
                link.abort()

        def start() -> None:
            task = loop.create_task(serve())
            self._attaching.add(task)
            task.add_done_callback(self._attaching.discard)

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop has closed
            sock.close()

    def stop_accepting(self) -> None:
        for sock in self._listeners:
            if self._loop is not None and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._listeners.clear()

    def close(self, timeout: float = 5.0) -> None:
        """After the application's connections closed: end the relay threads."""
        self.stop_accepting()
        for worker in self._workers:
            worker.stop()
        for worker in self._workers:
            worker.join(timeout)
        self._workers.clear()
