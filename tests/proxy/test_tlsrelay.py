"""``proxy.tlsrelay`` in process, with a real TLS client: the client's own address reaches the
application, a file that turns out shorter than its answer promised cuts the connection (never a
short body ended cleanly), and a connection that never completes its handshake is closed."""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import ssl
import time
from pathlib import Path

from aiohttp import web

from proxy.sending import send_file_range
from proxy.tlsrelay import TlsRelay
from tests.tlsfiles import TestCA


async def _app(tmp_path: Path) -> web.Server:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(3 * 2**20))

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/who":
            return web.Response(text=f"{request.remote} {request.scheme}")
        promised = 4 * 2**20  # one MiB more than the file holds
        response = web.StreamResponse(headers={"Content-Length": str(promised)})
        await response.prepare(request)
        assert request.transport is not None
        with blob.open("rb") as f:
            try:
                async for _ in send_file_range(request.transport, f.fileno(), 0, promised):
                    pass
            except EOFError:
                request.transport.abort()
        return response

    return web.Server(handle)


async def test_the_relay_serves_the_client_cuts_a_short_file_and_drops_a_silent_connection(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    pair = ca.issue("server")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair.cert, pair.key)
    relay = TlsRelay(context, threads=2, handshake_timeout=0.5)
    await relay.start("127.0.0.1", 0, 16, await _app(tmp_path))
    loop = asyncio.get_running_loop()

    def get(path: str, source: str = "127.0.0.2") -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", relay.port, timeout=10, context=ca.client_context(),
                                           source_address=(source, 0))  # fmt: skip
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def silent() -> float:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", relay.port)) as sock:
            sock.settimeout(5)
            assert sock.recv(1) == b""
        return time.monotonic() - started

    try:
        assert await loop.run_in_executor(None, get, "/who") == (200, b"127.0.0.2 https")
        try:
            await loop.run_in_executor(None, get, "/short")
            raise AssertionError("a short file was answered as whole")
        except http.client.IncompleteRead as exc:
            assert len(exc.partial) <= 3 * 2**20
        assert 0.4 < await loop.run_in_executor(None, silent) < 3
        assert await loop.run_in_executor(None, get, "/who", "127.0.0.3") == (200, b"127.0.0.3 https")
    finally:
        relay.stop_accepting()
        await loop.run_in_executor(None, relay.close)
