"""Streaming a blob from the replica that is filling it, instead of waiting for the bucket.

A replica waiting on another's lease would otherwise see nothing until the whole blob is in the
bucket: for a large layer every client of every other replica waits for the full download.  The
holder announces its internal listener in its lease (``peer``); a waiting replica asks it for
the bytes from the offset it has (``GET /_platproxy/peer/blobs/<digest>?from=N``) and writes
them into its own staging file as they arrive, so its clients are served as the holder's are.
The waiting replica hashes what it receives like any fill and keeps nothing unverified; it
never uploads (the holder does).  If the holder cannot be reached or stops mid-way, the waiting
replica goes back to the bucket and the lease (polling, then a takeover that skips what it
already has), so a dead holder costs time, never bytes.

Requests are signed, not sent with the secret: ``X-Platproxy-Peer: <unix time>:<HMAC-SHA256 of
"<digest> <from> <time>">``, accepted within ``SIGNATURE_WINDOW`` seconds, so the shared secret
never crosses the (plain http) cluster network.  The holder's side is ``proxy.http.peer``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import structlog

from proxy import wire
from proxy.config import LimitsConfig
from proxy.storage.staging import Fill

log = structlog.get_logger("platproxy.peers")

PEER_PATH = "/_platproxy/peer/blobs/"
PEER_HEADER = "X-Platproxy-Peer"
SIZE_HEADER = "X-Platproxy-Size"
SIGNATURE_WINDOW = 60.0


def sign(secret: str, digest: str, start: int, now: float) -> str:
    stamp = str(int(now))
    mac = hmac.new(secret.encode(), f"{digest} {start} {stamp}".encode(), hashlib.sha256).hexdigest()
    return f"{stamp}:{mac}"


def signed_by(secret: str, header: str, digest: str, start: int, now: float) -> bool:
    """Was ``header`` made with ``secret`` for this request, recently?"""
    stamp, _, _ = header.partition(":")
    if not stamp.isdigit() or abs(now - int(stamp)) > SIGNATURE_WINDOW:
        return False
    expected = sign(secret, digest, start, float(stamp))
    return hmac.compare_digest(expected.encode(), header.encode())


class Peers:
    """This replica's client side: streams from a lease holder into a fill, on worker threads
    (``proxy.wire``: the bytes never pass through the event loop, as for an upstream's fill)."""

    def __init__(self, url: str, secret: str, limits: LimitsConfig, lease_ttl: float) -> None:
        self.url = url
        """This replica's own peer URL (a lease naming it is not asked)."""
        self.secret = secret
        # A holder silent for a lease's length is stalled or gone (it could not renew either):
        # back to the lease, which a takeover will have by then, rather than the read timeout.
        wait = min(limits.read_timeout, lease_ttl)
        self.dial = wire.Dial(functools.cache(ssl.create_default_context), min(limits.connect_timeout, wait), wait)
        self.workers = ThreadPoolExecutor(limits.max_upstream_fetches, "peer-fill")

    async def close(self) -> None:
        self.workers.shutdown(wait=False, cancel_futures=True)

    async def stream(self, peer: str, fill: Fill) -> bool:
        """Copy the blob from ``peer`` into ``fill`` from what it has; True when the holder sent
        it to the end (the caller's verification decides if it is right), False when the holder
        had nothing to give or stopped (the caller falls back to the bucket)."""
        start = fill.written
        headers = {PEER_HEADER: sign(self.secret, fill.digest, start, time.time())}
        url = f"{peer}{PEER_PATH}{fill.digest}?from={start}"
        try:
            answer = await wire.open_on(self.workers, "GET", url, headers, self.dial)
        except (OSError, http.client.HTTPException) as exc:
            log.info("the lease holder cannot be reached; waiting on the bucket", peer=peer, digest=fill.digest,
                     error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            return False
        try:
            if answer.status != 200:
                log.info("the lease holder cannot stream this blob", peer=peer, digest=fill.digest,
                         status=answer.status)  # fmt: skip
                return False
            size = answer.headers.get(SIZE_HEADER, "")
            if fill.size is None and size.isdigit():
                fill.size = int(size)
            fill.headers_ready.set()
            progress = fill.progress_reporter()
            copied = await wire.pump_on(self.workers, answer, fill.writer.store, fill.writer.check,
                                        lambda total: progress(start + total))  # fmt: skip
            fill.reached(start + copied)
        except (OSError, http.client.HTTPException) as exc:
            fill.reached(fill.writer.written)  # what was stored (and hashed) before it stopped
            stopped = f"{type(exc).__name__}: {exc}"
        else:
            stopped = "" if fill.size is None or fill.written == fill.size else "the connection closed early"
        finally:
            answer.release()
        if stopped:  # the holder died or was cut: the lease (a takeover) or the bucket finishes it
            log.warning("streaming from the lease holder stopped; back to the bucket", peer=peer,
                        digest=fill.digest, have=fill.written, error=stopped)  # fmt: skip
        return not stopped
