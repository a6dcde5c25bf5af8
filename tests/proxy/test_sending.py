"""``proxy.sending``: file ranges sent to a real client socket from worker threads."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from proxy.sending import send_file_range


class _Hold(asyncio.Protocol):
    def __init__(self, got: asyncio.Future[asyncio.Transport]) -> None:
        self.got = got

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.got.set_result(transport)


async def _connected() -> tuple[asyncio.Transport, socket.socket, asyncio.Server]:
    """A server-side transport (as aiohttp's handlers have) and the client's plain socket."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[asyncio.Transport] = loop.create_future()
    server = await loop.create_server(lambda: _Hold(got), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # a small window: the sender waits
    await asyncio.to_thread(client.connect, ("127.0.0.1", port))
    return await got, client, server


async def _drain(steps: AsyncIterator[int]) -> int:
    return sum([sent async for sent in steps])


def _read_all(client: socket.socket, size: int, slow: bool = False) -> bytes:
    parts, got = [], 0
    while got < size:
        part = client.recv(65536)
        if not part:
            break
        parts.append(part)
        got += len(part)
        if slow:
            time.sleep(0.0005)
    return b"".join(parts)


@pytest.fixture
def blob(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    data = os.urandom(24 * 2**20 + 123)
    path = tmp_path / "blob"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


async def test_a_range_arrives_whole_through_a_slow_reader(blob: tuple[int, bytes]) -> None:
    fd, data = blob
    transport, client, server = await _connected()
    start, count = 1000, 20 * 2**20
    reading = asyncio.create_task(asyncio.to_thread(_read_all, client, count, True))
    sent = await _drain(send_file_range(transport, fd, start, count))
    got = await reading
    assert sent == count
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data[start : start + count]).hexdigest()
    transport.close()
    client.close()
    server.close()


async def test_a_client_that_leaves_is_a_connection_reset(blob: tuple[int, bytes]) -> None:
    fd, _ = blob
    transport, client, server = await _connected()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sending = asyncio.create_task(_drain(send_file_range(transport, fd, 0, 24 * 2**20)))
    await asyncio.to_thread(client.recv, 1000)
    client.close()  # an abortive close: the sender's next step fails
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(sending, 10)
    transport.close()
    server.close()


async def test_a_file_shorter_than_the_range_is_an_eof_error(blob: tuple[int, bytes]) -> None:
    fd, data = blob
    transport, client, server = await _connected()
    reading = asyncio.create_task(asyncio.to_thread(_read_all, client, 2**20))
    with pytest.raises(EOFError):
        await _drain(send_file_range(transport, fd, len(data) - 2**20, 2**20 + 10))
    transport.close()
    assert len(await reading) == 2**20
    client.close()
    server.close()


async def test_a_cancelled_send_stops_and_leaves_the_transport_usable(blob: tuple[int, bytes]) -> None:
    fd, _ = blob
    transport, client, server = await _connected()  # nobody reads: the send waits for room
    task = asyncio.create_task(_drain(send_file_range(transport, fd, 0, 24 * 2**20)))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not transport.is_closing()
    transport.close()
    client.close()
    server.close()


async def test_it_refuses_what_it_cannot_send_before_sending_anything(blob: tuple[int, bytes]) -> None:
    fd, _ = blob

    class Buffered(asyncio.Transport):
        def get_extra_info(self, name: str, default: object = None) -> object:
            return {"socket": socket.socket(), "sslcontext": None}.get(name, default)

        def get_write_buffer_size(self) -> int:
            return 10  # the headers are still queued: body bytes must not overtake them

    class Tls(Buffered):
        def get_extra_info(self, name: str, default: object = None) -> object:
            return ssl.create_default_context() if name == "sslcontext" else super().get_extra_info(name, default)

    for transport in (Buffered(), Tls()):
        with pytest.raises(NotImplementedError):
            await _drain(send_file_range(transport, fd, 0, 10))


async def test_a_transport_closed_before_the_send_is_a_connection_reset(blob: tuple[int, bytes]) -> None:
    fd, _ = blob
    transport, client, server = await _connected()
    transport.abort()  # the loop saw the client go: the transport's socket is closed
    await asyncio.sleep(0)
    with pytest.raises(ConnectionResetError):
        await _drain(send_file_range(transport, fd, 0, 10))
    client.close()
    server.close()
