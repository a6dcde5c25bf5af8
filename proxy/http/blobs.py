"""The blob endpoint: how a blob's bytes reach the client.

A stored blob goes out as its store hands it out (a file sent with ``sendfile`` on
``proxy.sending``'s threads, a redirect, or a stream with the client's Range passed on); a missing
one joins or starts the single-flight fill and is sent from the growing staging file as the fill
worker's progress reaches it.  Kept apart from the other handlers because every way of cutting a
client lives here: a failed fill or a store that stops mid-body aborts the connection (never a
short body finished cleanly), a client that leaves is logged and the fill goes on for the others.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import IO, Any

import structlog
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest

from proxy.errors import StorageFailed
from proxy.http.keys import Services
from proxy.http.ranges import content_range, parse_range
from proxy.http.record import record
from proxy.pull.fills import FillFailed, read_fill, ready_ranges
from proxy.pull.route import Route
from proxy.sending import send_file_range
from proxy.storage.base import LocalFile, Redirect
from proxy.storage.staging import Fill

log = structlog.get_logger("platproxy.http")


async def blob(request: web.Request, services: Services, r: Route, digest: str) -> web.StreamResponse:
    headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"', "Accept-Ranges": "bytes"}
    size = await services.blobs.stored_size(digest)
    if size is not None:
        # a blob the tag's prefetch brought a moment ago is this client's miss, not a hit
        outcome = "prefetched" if services.blobs.first_since_prefetch(digest) else "hit"
        record(request).cache = headers["X-Platproxy-Cache"] = outcome
        try:
            return await _stored(request, services, digest, headers, size)
        except FileNotFoundError:  # removed from the store since it was looked up: fill it again
            record(request).cache = "miss"
    if request.method == "HEAD":
        size = await services.blobs.head_uncached(r, digest)
        record(request).cache = headers["X-Platproxy-Cache"] = "miss"
        extra = {"Content-Length": str(size)} if size is not None else {}
        return web.Response(headers={**headers, **extra, "Content-Type": "application/octet-stream"})
    data = await services.blobs.small(r, digest)
    if data is not None:  # a config, a thin layer: fetched whole (no fill), then answered
        record(request).cache = headers["X-Platproxy-Cache"] = "miss"
        wanted = parse_range(request.headers.get("Range"), len(data))
        if wanted:
            headers["Content-Range"] = content_range(wanted, len(data))
            data = data[wanted.start : wanted.end]
        return web.Response(status=206 if wanted else 200, body=data, headers=headers,
                            content_type="application/octet-stream")  # fmt: skip
    fill, started = await services.blobs.fill(r, digest)
    record(request).cache = headers["X-Platproxy-Cache"] = "miss" if started else "coalesced"
    if fill.finished and fill.error is None and fill.size is not None:
        return await _stored(request, services, digest, headers, fill.size)
    wanted = parse_range(request.headers.get("Range"), fill.size)
    response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
    response.content_type = "application/octet-stream"
    start, end = (wanted.start, wanted.end) if wanted else (0, fill.size)
    if fill.size is not None and end is not None:
        response.content_length = end - start
        if wanted:
            response.headers["Content-Range"] = content_range(wanted, fill.size)
    await response.prepare(request)
    try:
        with services.blobs.pinned(digest):
            await stream_fill(request, response, fill, start, end)
    except FillFailed as exc:
        log.warning("cutting client: blob fill failed", digest=digest, error=str(exc))
        record(request).add_cache("cut")
        if request.transport is not None:
            request.transport.abort()  # never finish a short or wrong body cleanly
        return response
    except ConnectionResetError:  # the fill is not this client's: it goes on for the others
        record(request).add_cache("client left")
        return response
    await response.write_eof()
    return response


async def stream_fill(
    request: web.Request, response: web.StreamResponse, fill: Fill, start: int, end: int | None
) -> None:
    """Zero-copy (sendfile) from the growing temporary file; a plain copy where that is impossible.
    Raises ``FillFailed`` (cut the connection) and ``ConnectionResetError`` (the client left);
    the bytes sent so far are the request's ``record().sent`` either way."""
    transport = request.transport
    done = record(request)
    done.sent = 0
    if end is not None and transport is not None and isinstance(transport, asyncio.Transport):
        # (without a known end the answer is chunked, which aiohttp must frame: no sendfile; the
        # headers are on the wire or still queued, and then send_fill refuses before sending)
        try:
            async for sent in send_fill(fill, transport, start, end):
                done.sent += sent
            return
        except NotImplementedError:
            pass
    async for chunk in read_fill(fill, start + done.sent, end):
        await response.write(chunk)
        done.sent += len(chunk)


class _SentFileResponse(web.FileResponse):
    """A FileResponse the handler sends itself (to pin the blob for exactly as long as it is
    sent); aiohttp prepares the returned response again after the handler, which must then be
    a no-op rather than a second send."""

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return self._payload_writer
        return await super().prepare(request)

    async def _sendfile(self, request: BaseRequest, fobj: IO[Any], offset: int, count: int) -> AbstractStreamWriter:
        """The body on ``proxy.sending``'s threads (many cached streams copy on every core, not
        on the loop's), or over TLS on the connection's relay thread."""
        writer = await web.StreamResponse.prepare(self, request)  # the status line and headers
        assert writer is not None
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("Connection lost")
        try:
            async for _ in send_file_range(transport, fobj.fileno(), offset, count):
                pass
        except NotImplementedError:  # no socket to send to: aiohttp's own way
            return await super()._sendfile(request, fobj, offset, count)
        except EOFError:  # the file shrank under us: never finish a short body cleanly
            transport.abort()
            raise ConnectionResetError("the stored file ended early") from None
        await web.StreamResponse.write_eof(self)
        return writer


async def _stored(
    request: web.Request, services: Services, digest: str, headers: dict[str, str], size: int
) -> web.StreamResponse:
    """A stored blob, as the store hands it out: a file (sendfile), a redirect, or a stream."""
    where = await services.blobs.locate_stored(digest)
    if isinstance(where, LocalFile):
        return await _file(request, services, digest, where, headers)
    if request.method == "HEAD":
        length = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        return web.Response(headers={**headers, **length})
    if isinstance(where, Redirect):
        record(request).cache = "hit, redirect"
        return web.Response(status=307, headers={**headers, "Location": where.location})
    return await _streamed(request, services, digest, headers, size)


async def _streamed(
    request: web.Request, services: Services, digest: str, headers: dict[str, str], size: int
) -> web.StreamResponse:
    """A blob streamed from the store with the client's Range passed on."""
    wanted = parse_range(request.headers.get("Range"), size)
    start, end = (wanted.start, wanted.end) if wanted else (0, size)
    stream = services.blobs.read_range(digest, start, end)
    try:
        first = await anext(stream, b"")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StorageFailed(f"blob {digest}", exc) from None
    response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
    response.content_type = "application/octet-stream"
    response.content_length = end - start
    if wanted:
        response.headers["Content-Range"] = content_range(wanted, size)
    await response.prepare(request)
    done = record(request)
    done.sent = 0
    try:
        await response.write(first)
        done.sent = len(first)
        async for chunk in stream:
            await response.write(chunk)
            done.sent += len(chunk)
    except OSError as exc:
        log.warning("cutting client: the store stopped sending", digest=digest, error=str(exc))
        if request.transport is not None:
            request.transport.abort()
        return response
    finally:
        await stream.aclose()
    await response.write_eof()
    return response


async def _file(
    request: web.Request, services: Services, digest: str, where: LocalFile, headers: dict[str, str]
) -> web.StreamResponse:
    """A cached blob: sendfile, Range and HEAD handled by aiohttp; pinned while it is sent."""
    response = _SentFileResponse(where.path, headers=headers)
    response.content_type = "application/octet-stream"
    with services.blobs.pinned(digest):
        await response.prepare(request)
    return response


async def send_fill(fill: Fill, transport: asyncio.Transport, start: int, end: int | None) -> AsyncIterator[int]:
    """Like ``pull.fills.read_fill``, but the kernel copies (``sendfile``) each range as the fill
    makes it ready (``ready_ranges``), on the send threads of ``proxy.sending`` (the loop only
    follows).  Here rather than in pull: which socket and how bytes reach it is the edge's.

    Yields the number of bytes sent after each step; ``ConnectionResetError`` when the client
    left (the fill goes on for the others).  Zero-copy matters here: every waiting
    client of a cold blob is fed from the same temporary file, and copying each chunk through
    Python once per client is what limits a busy mirror.  Raises ``NotImplementedError`` before
    sending anything where the transport cannot sendfile (the caller then uses ``read_fill``).
    """
    fd = fill.open_reader()
    try:
        async for offset, length in ready_ranges(fill, start, end):
            try:
                async for sent in send_file_range(transport, fd, offset, length):
                    yield sent
            except EOFError as exc:
                raise FillFailed(str(exc)) from None
    finally:
        os.close(fd)
