"""A header timeout for client connections (aiohttp has none).

A client that opens a connection and then trickles its request headers (slowloris) would hold
a connection and its buffers forever: aiohttp's keep-alive timer only runs between requests.
Each connection here gets a timer whenever it is waiting for (the rest of) a request's headers,
started when the connection opens or when header bytes arrive, cancelled as soon as a whole
request has been parsed; when it fires, the connection is closed.  Request bodies are never
waited for: every method that carries one is refused before its body is read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class _GuardedRequestHandler(RequestHandler):
    header_timeout = 30.0
    _stall: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._disarm()
        elif data and self._stall is None:
            self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._stall = asyncio.get_running_loop().call_later(self.header_timeout, self._stalled)

    def _disarm(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _stalled(self) -> None:
        self._stall = None
        if self.transport is not None:
            self.transport.close()


class HeaderTimeout:
    """Wraps an aiohttp ``Server`` (the protocol factory of a runner) to guard every connection."""

    def __init__(self, server: web.Server, timeout: float) -> None:
        self._server = server
        self._timeout = timeout

    def __call__(self) -> RequestHandler:
        handler = _GuardedRequestHandler(self._server, loop=self._server._loop, **self._server._kwargs)
        handler.header_timeout = self._timeout
        return handler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def guard(runner: web.AppRunner, timeout: float) -> None:
    """After ``runner.setup()``: every connection its sites accept gets the header timeout."""
    assert runner.server is not None
    runner._server = HeaderTimeout(runner.server, timeout)  # type: ignore[assignment]
