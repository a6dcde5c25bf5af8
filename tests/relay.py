"""A TCP relay that connects onward from a chosen loopback source address.

Real clients (skopeo, podman, ctr, dockerd) are Go programs that cannot be told which source
address to connect from; platproxy's ``[[clients]]`` rules match on exactly that.  The relay
listens on 127.0.0.1 and opens each onward connection from ``source`` (any 127.0.0.0/8 address),
so platproxy sees the client at ``source``, as it would see a node of another subnet: bytes are
passed through untouched (plain HTTP or TLS alike), nothing is parsed or added.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from urllib.parse import urlsplit


class Relay:
    def __init__(self, target_port: int, source: str) -> None:
        self.target_port = target_port
        self.source = source
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Relay:
        self._thread.start()
        assert self._ready.wait(10), "the relay did not start"
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.close()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.target_port, local_addr=(self.source, 0))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, writer), _pipe(reader, client_writer))
        for w in (writer, client_writer):
            w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One direction; its end is passed on as a half-close (the other direction goes on)."""
    with contextlib.suppress(OSError):
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


class ConnectProxy(Relay):
    """An HTTP forward proxy that knows one name: ``CONNECT <name>:<port>`` (a tunnel, for https)
    or an absolute-form request for ``http://<name>:<port>/...`` reaches 127.0.0.1:<port>; anything
    else is refused.  dockerd treats every registry that resolves to a loopback address as
    insecure (no certificate checks, no ``certs.d``); a name it cannot resolve, reached through its
    ``HTTPS_PROXY``, is checked like a remote registry's.  platproxy's ``proxy`` setting is tested
    with it too: only the proxy can resolve the name, so a request that arrives went through it.
    Every request head the proxy itself read is kept in ``heads`` (what a proxy could see)."""

    def __init__(self, name: str) -> None:
        super().__init__(0, "127.0.0.1")
        self.name = name
        self.tunnels: list[str] = []
        self.heads: list[bytes] = []

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        head = await client_reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        method, target, version = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            await self._forward(head, method, target, version, client_reader, client_writer)
            return
        host, _, port = target.rpartition(":")
        if host != self.name or not port.isdigit():
            client_writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            client_writer.close()
            return
        self.tunnels.append(target)
        reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
        client_writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(_pipe(client_reader, writer), _pipe(reader, client_writer))
        for w in (writer, client_writer):
            w.close()

    async def _forward(self, head: bytes, method: str, target: str, version: str,
                       client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:  # fmt: skip
        """Plain http: the absolute-form request goes on in origin form, one request per connection."""
        parts = urlsplit(target)
        if parts.scheme != "http" or parts.hostname != self.name or parts.port is None:
            client_writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            client_writer.close()
            return
        origin = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        rest = [line for line in head.split(b"\r\n", 1)[1].split(b"\r\n")
                if not line.lower().startswith((b"connection:", b"proxy-connection:", b"keep-alive:"))]  # fmt: skip
        reader, writer = await asyncio.open_connection("127.0.0.1", parts.port)
        writer.write(f"{method} {origin} {version}\r\nConnection: close\r\n".encode() + b"\r\n".join(rest))
        await asyncio.gather(_pipe(client_reader, writer), _pipe(reader, client_writer))
        for w in (writer, client_writer):
            w.close()
