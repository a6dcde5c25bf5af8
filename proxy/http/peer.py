"""The internal listener (``[store.s3] peer_listen``): this replica's fills in progress, streamed
to the other replicas of the tier that wait on its lease (``proxy.storage.s3.peers`` says why).

Only one route, and only on its own port (never the client port): ``GET
/_platproxy/peer/blobs/<digest>?from=N`` with a request signed by the shared secret.  It
answers from the fill's staging file as it grows (sendfile), the last byte only once the digest
matched; a fill that fails cuts the connection, so the waiting replica never finishes a wrong
body cleanly.  No fill in progress here (it finished, or never started): 404, and the waiting
replica looks in the bucket.
"""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from proxy.errors import PlatproxyError
from proxy.http.blobs import stream_fill
from proxy.http.errors import error_body
from proxy.http.keys import FILLS
from proxy.http.record import record
from proxy.oci.names import check_digest
from proxy.pull.fills import FillFailed
from proxy.storage.s3.peers import PEER_HEADER, PEER_PATH, SIZE_HEADER, signed_by

log = structlog.get_logger("platproxy.peer")

SECRET: web.AppKey[str] = web.AppKey("peer_secret", str)
MAIN: web.AppKey[web.Application] = web.AppKey("main", web.Application)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.Response(status=status, body=error_body(code, message), content_type="application/json")


async def peer_blob(request: web.Request) -> web.StreamResponse:
    digest, start_text = request.match_info["digest"], request.query.get("from", "0")
    try:
        check_digest(digest)
    except PlatproxyError as exc:
        return _error(400, "DIGEST_INVALID", exc.message)
    if not start_text.isdigit():
        return _error(400, "RANGE_INVALID", "from must be a byte offset")
    start = int(start_text)
    if not signed_by(request.app[SECRET], request.headers.get(PEER_HEADER, ""), digest, start, time.time()):
        log.warning("peer request refused: not signed with the shared secret", peer=request.remote, digest=digest)
        return _error(401, "UNAUTHORIZED", "peer requests must be signed with [store.s3] peer_secret")
    fill = request.app[MAIN][FILLS].active.get(digest)
    if fill is None or fill.error is not None:
        return _error(404, "BLOB_UNKNOWN", "no fill of this blob in progress here")
    await fill.headers_ready.wait()
    if fill.size is not None and start > fill.size:
        return _error(416, "RANGE_INVALID", f"from {start} is beyond the blob's {fill.size} bytes")
    response = web.StreamResponse(headers={SIZE_HEADER: str(fill.size)} if fill.size is not None else {})
    response.content_type = "application/octet-stream"
    if fill.size is not None:
        response.content_length = fill.size - start
    record(request).sent = 0
    try:
        await response.prepare(request)
        await stream_fill(request, response, fill, start, fill.size)
    except FillFailed:
        if request.transport is not None:
            request.transport.abort()  # never finish a wrong body cleanly
        return response
    except ConnectionResetError:  # the waiting replica gave up (this replica was paused, say)
        log.info("a waiting replica left", peer=request.remote, digest=digest, bytes=record(request).sent)
        return response
    sent = record(request).sent
    log.info("streamed to a waiting replica", peer=request.remote, digest=digest, start=start, bytes=sent)
    await response.write_eof()
    return response


def build_peer_app(main: web.Application, secret: str) -> web.Application:
    peer = web.Application(client_max_size=1024)
    peer[SECRET] = secret
    peer[MAIN] = main
    peer.router.add_get(PEER_PATH + "{digest}", peer_blob)
    return peer
