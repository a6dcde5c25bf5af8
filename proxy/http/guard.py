"""What a client connection may cost before it has sent a whole request (aiohttp bounds little).

- **Header timeout.**
A client that opens a connection and then trickles its request headers (slowloris) would hold
a connection and its buffers forever: aiohttp's keep-alive timer only runs between requests.
Each connection here gets a timer whenever it is waiting for (the rest of) a request's headers,
started when the connection opens or when header bytes arrive, cancelled as soon as a whole
request has been parsed; when it fires, the connection is closed.  Request bodies are never
waited for: every method that carries one is refused before its body is read.
- **Partial requests per client.**  A connection that has sent part of its headers holds up to
  ``max_headers`` lines of ``max_header_line`` bytes in the parser's buffers; one address may
  have at most ``max_partial_per_client`` such connections at once, and the one that goes over
  is closed.  A whole request arriving in one packet, as every real client sends it, never
  counts, so a burst of many clients from one address is unaffected.
- **One JSON line per bad request.**  What aiohttp cannot parse (a NUL in the request line, a
  header over the limits) is answered with an OCI error body and logged as one line, instead of
  a plain-text 400 and a multi-line traceback that anyone could write into the log.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from proxy.http.errors import error_body

log = structlog.get_logger("platproxy.http")


class _GuardedRequestHandler(RequestHandler):
    header_timeout = 30.0
    max_partial = 32
    partial: Counter[str]
    """Connections per client address holding part of a request (shared by one server's handlers)."""
    _stall: asyncio.TimerHandle | None = None
    _peer = ""
    _is_partial = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self._arm()

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._disarm()
            self._whole()
        elif data:
            if self._stall is None:
                self._arm()
            self._partial()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._whole()
        super().connection_lost(exc)

    def _partial(self) -> None:
        if self._is_partial or self.transport is None:
            return
        if self.partial[self._peer] >= self.max_partial:
            log.warning("connection closed: too many partial requests from one address", address=self._peer,
                        limit=self.max_partial)  # fmt: skip
            self.transport.close()
            return
        self._is_partial = True
        self.partial[self._peer] += 1

    def _whole(self) -> None:
        if self._is_partial:
            self._is_partial = False
            self.partial[self._peer] -= 1
            if self.partial[self._peer] <= 0:
                del self.partial[self._peer]

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """A request aiohttp could not parse (or a handler error it caught): one log line, an OCI
        error body, the connection closed."""
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had begun: the connection is closed")
        reason = " ".join(str(exc or message or "").split())[:300]  # aiohttp's messages span lines
        log.warning("bad request", address=request.remote, status=status, error=reason)
        text = "the request could not be parsed" if status < 500 else "internal error; see the server log"
        response = web.Response(status=status, body=error_body("UNSUPPORTED" if status < 500 else "UNKNOWN", text,
                                                               {"reason": reason} if status < 500 else None),
                                content_type="application/json")  # fmt: skip
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's own error reports: one line without a traceback (``handle_error`` logs the rest)."""
        error = kw.get("exc_info")
        named = f"{type(error).__name__}: {error}"[:300] if isinstance(error, BaseException) else ""
        log.warning("connection error", message=str(args[0]) if args else "", error=named)

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

    def __init__(self, server: web.Server, timeout: float, max_partial: int = 32) -> None:
        self._server = server
        self._timeout = timeout
        self._max_partial = max_partial
        self._partial: Counter[str] = Counter()

    def __call__(self) -> RequestHandler:
        handler = _GuardedRequestHandler(self._server, loop=self._server._loop, **self._server._kwargs)
        handler.header_timeout = self._timeout
        handler.max_partial = self._max_partial
        handler.partial = self._partial
        return handler

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def guard(runner: web.AppRunner, timeout: float, max_partial: int = 32) -> None:
    """After ``runner.setup()``: every connection its sites accept gets the header timeout and
    counts against its address's partial requests."""
    assert runner.server is not None
    runner._server = HeaderTimeout(runner.server, timeout, max_partial)  # type: ignore[assignment]
