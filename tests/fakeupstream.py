"""A TEST DOUBLE of an upstream registry, for faults the real registry cannot produce.

The real upstream in these tests is Distribution 2.8 (``tests/registry.py``).  This double
exists only for what Distribution will not do on purpose: serve bytes that do not match their
digest, end a body short, answer 429 with ``Retry-After``, redirect a blob to another host (a
"CDN"), or announce a token realm on a foreign domain.  It records every request it sees,
with its headers, so tests can assert what platproxy sent where.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.registry import free_port


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FakeUpstream:
    """Serves ``manifests`` (ref -> (bytes, media type)) and ``blobs`` (digest -> bytes)."""

    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    """Digests served with one byte flipped (same length)."""
    short: set[str] = field(default_factory=set)
    """Digests whose body stops half-way although Content-Length promised all of it."""
    cut_first: int = 0
    """The first this many blob GETs stop half-way (later ones are whole): a fetch that fails."""
    rate_limited: bool = False
    fail_status: int = 0
    """When set, every /v2/ request after the base check is answered with this status (e.g. 503)."""
    active: int = 0
    max_active: int = 0
    """Blob responses being sent at once, and the most seen (to check platproxy's bound)."""
    redirect_blobs_to: str = ""
    """Base URL of another host to redirect blob GETs to."""
    token_realm: str = ""
    """When set, every /v2/ request needs ``Bearer good-token`` from this realm."""
    token_login: str = ""
    """When set (``user:password``), the token endpoint hands out tokens only for that login."""
    basic_auth: str = ""
    """When set (``user:password``), every /v2/ request needs that Basic authorization."""
    chunk_delay: float = 0.0
    """Seconds to wait between 64 KiB chunks of a blob (a slow upstream)."""
    headers_delay: float = 0.0
    """Seconds to wait before answering a blob GET at all (an upstream slow to start)."""
    chunked: bool = False
    flood: int = 0
    """Bytes of garbage sent after a blob's own bytes (with ``chunked``: a body without end)."""
    trickle: float = 0.0
    """Send blob bodies one byte at a time, this many seconds apart (a trickle within read_timeout)."""
    sent_bytes: int = 0
    """Blob body bytes written so far (until the reader stopped reading)."""
    """Send blob bodies with chunked encoding and no Content-Length (as some CDNs do)."""
    tags: list[str] = field(default_factory=list)
    """What ``/tags/list`` answers, as given (hostile names included)."""
    referrers_link: str = ""
    """A ``Link`` header sent with every referrers answer (an empty index)."""
    ssl_context: ssl.SSLContext | None = None
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    seen: list[Seen] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    def add_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for s in self.seen if s.method == method and path_part in s.path)

    # -- server -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.path_qs, dict(request.headers)))
        path = request.path
        if path.endswith("/token"):
            login = "Basic " + base64.b64encode(self.token_login.encode()).decode()
            if self.token_login and request.headers.get("Authorization") != login:
                return web.json_response({"details": "incorrect username or password"}, status=401)
            return web.json_response({"token": "good-token", "expires_in": 300})
        if self.basic_auth:
            expected = "Basic " + base64.b64encode(self.basic_auth.encode()).decode()
            if request.headers.get("Authorization") != expected:
                return web.json_response({"errors": []}, status=401, headers={"WWW-Authenticate": 'Basic realm="fake"'})
        if self.token_realm and request.headers.get("Authorization") != "Bearer good-token":
            challenge = f'Bearer realm="{self.token_realm}",service="fake",scope="repository:x:pull"'
            return web.json_response({"errors": []}, status=401, headers={"WWW-Authenticate": challenge})
        if self.rate_limited:
            return web.json_response(
                {"errors": [{"code": "TOOMANYREQUESTS"}]}, status=429, headers={"Retry-After": "42"}
            )
        if path in ("/v2/", "/v2"):
            return web.json_response({})
        if self.fail_status:
            return web.json_response({"errors": [{"code": "UNAVAILABLE"}]}, status=self.fail_status)
        if path.endswith("/tags/list"):
            return web.json_response({"name": "x", "tags": self.tags})
        if "/referrers/" in path:
            empty = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
            extra = {"Link": self.referrers_link} if self.referrers_link else {}
            return web.json_response(empty, content_type="application/vnd.oci.image.index.v1+json", headers=extra)
        if "/manifests/" in path:
            ref = path.rsplit("/", 1)[1]
            if ref not in self.manifests:
                return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
            data, media_type = self.manifests[ref]
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            body = b"" if request.method == "HEAD" else data
            return web.Response(body=body, headers={"Content-Type": media_type, "Docker-Content-Digest": digest,
                                                    "Content-Length": str(len(data))})  # fmt: skip
        if "/blobs/" in path:
            digest = path.rsplit("/", 1)[1]
            if digest not in self.blobs:
                return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
            if self.redirect_blobs_to and "cdn" not in request.query:
                raise web.HTTPTemporaryRedirect(f"{self.redirect_blobs_to}{path}?cdn=1")
            return await self._blob(request, digest)
        return web.json_response({"errors": []}, status=404)

    async def _blob(self, request: web.Request, digest: str) -> web.StreamResponse:
        data = self.blobs[digest]
        if digest in self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        response = web.StreamResponse(headers={"Docker-Content-Digest": digest})
        if self.chunked and request.method != "HEAD":
            response.enable_chunked_encoding()
        else:
            response.content_length = len(data)
        response.content_type = "application/octet-stream"
        await asyncio.sleep(self.headers_delay)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            return await self._send_body(request, response, digest, data)
        finally:
            self.active -= 1

    async def _send_body(self, request: web.Request, response: web.StreamResponse, digest: str,
                         data: bytes) -> web.StreamResponse:  # fmt: skip
        cut = self.cut_first > 0
        self.cut_first -= cut
        short = digest in self.short or cut
        end = len(data) // 2 if short else len(data)
        if self.trickle:
            for i in range(end):
                await response.write(data[i : i + 1])
                self.sent_bytes += 1
                await asyncio.sleep(self.trickle)
            await response.write_eof()
            return response
        if self.flood:
            data = data + bytes(self.flood)
            end = len(data)
        for i in range(0, end, 65536):  # at the pace chunk_delay sets, a cut one included
            await response.write(data[i : min(i + 65536, end)])
            self.sent_bytes += min(65536, end - i)
            if self.chunk_delay and (short or i + 65536 < end):  # a whole body ends with its last byte
                await asyncio.sleep(self.chunk_delay)
        if short:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response

    def start(self) -> FakeUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(
                web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context).start()
            )
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def manifest_for(blobs: list[tuple[str, int]], config: tuple[str, int]) -> bytes:
    """A minimal OCI manifest naming the given (digest, size) layers and config."""
    import json

    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config[0], "size": config[1]},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s} for d, s in blobs
        ],
    }
    return json.dumps(doc).encode()
