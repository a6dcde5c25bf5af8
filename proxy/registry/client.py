"""The client of one upstream registry: requests with auth, redirects and errors handled, and the
pull API on top of them.

- **Auth** is ``proxy.registry.auth``'s: what each request carries, and how a 401 is answered
  (the one request that takes, the token, is made here).
- **Redirects** (blob downloads to a CDN) are followed by hand, at most 5, and the
  ``Authorization`` header is sent only to the upstream's own origin (scheme, host and port):
  a redirect to another port of the same host is another origin and gets none.
- **Errors** become ``UpstreamError`` with the status (``None`` when unreachable) and
  ``Retry-After``; the handlers decide what the client sees.
- **Who sends** is ``proxy.registry.transport``'s (aiohttp on the loop; a fill worker for blob
  bodies, ``copy_blob``); every request goes through the same auth, redirects and errors here.
"""

from __future__ import annotations

import asyncio
import http.client
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode, urljoin, urlsplit

import aiohttp
import structlog

from proxy import wire
from proxy.config import LimitsConfig, UpstreamConfig
from proxy.errors import UpstreamError
from proxy.oci import jsondoc
from proxy.oci.mediatypes import UPSTREAM_ACCEPT
from proxy.oci.names import TAG
from proxy.registry.auth import Authorizer
from proxy.registry.credentials import Challenge
from proxy.registry.transport import A, Sender, Transport, origin_of, read_limited
from proxy.sizes import CHUNK, MAX_REFERRERS_SIZE, MAX_TAGS_SIZE

if TYPE_CHECKING:  # the command line's clients count nothing: prometheus stays unloaded there
    from proxy.metrics import Metrics

log = structlog.get_logger("platproxy.upstream")

MAX_REDIRECTS = 5
_LOCAL_LINK = re.compile(r'<(/v2/[A-Za-z0-9._/:@-]+(\?[A-Za-z0-9._~%=&:+-]*)?)>; *rel="next"')
"""A referrers ``Link`` passed on: a path on this registry, nothing that names another host."""
MAX_TOKEN_ANSWER = 65536
CHALLENGE_TTL = 600.0
"""How long the upstream's own challenge (where its token service is) is remembered."""


@dataclass(frozen=True)
class ManifestHead:
    digest: str
    media_type: str
    size: int | None


RESOLVE_HEADER = "X-Platproxy-Resolve"
"""Sent as ``none`` to a parent platproxy: answer tags with the upstream's own index, unresolved,
because a child resolves for its own host.  Any other registry ignores it."""


class Upstream:
    """One configured upstream registry, with its own connection pool and token cache."""

    def __init__(
        self,
        config: UpstreamConfig,
        limits: LimitsConfig,
        metrics: Metrics | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        """``session``: an HTTP session to send every request with (tests give one bound to an
        in-process registry); by default one is made on first use and closed by ``close``."""
        self.config = config
        self.metrics = metrics
        self.reachable = True
        """False after the last request found the upstream unreachable or failing (5xx, 429)."""
        self.name = config.name
        self.base = config.url
        self.host = urlsplit(config.url).hostname or ""
        self.origin = origin_of(config.url)
        self.transport = Transport(config, limits, session)
        self.auth = Authorizer(self.host, config.username, config.password, config.auth == "passthrough")
        self._challenge: tuple[Challenge | None, float] = (None, 0.0)
        self._slots = asyncio.Semaphore(limits.max_upstream_fetches)
        self._parent_warned = False

    async def close(self) -> None:
        await self.transport.close()

    # -- requests --------------------------------------------------------------------------

    @asynccontextmanager
    async def request(
        self, method: str, path: str, *, scope: str, headers: dict[str, str] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request to the upstream with auth and redirects handled; the caller reads the body."""
        async with self._slots, self._request(method, path, scope, headers, self.transport.send_here) as resp:
            yield resp

    @asynccontextmanager
    async def _request(
        self, method: str, path: str, scope: str, headers: dict[str, str] | None, send: Sender[A]
    ) -> AsyncIterator[A]:
        url = self.base + path
        hdrs = dict(headers or {})
        if self.config.parent:  # a mirror in front of this registry: name it, and let us resolve
            url += ("&" if "?" in path else "?") + "ns=" + quote(self.name, safe="")
            hdrs[RESOLVE_HEADER] = "none"
        started = time.monotonic()
        try:
            resp = await self._send(method, url, hdrs, scope, send)
        except UpstreamError as exc:
            self._failed(exc)
            raise
        if self.metrics is not None:
            self.metrics.upstream_latency.labels(self.name).observe(time.monotonic() - started)
        try:
            if resp.status == 401:
                challenge = resp.headers.get("WWW-Authenticate", "")
                resp.release()
                if await self.auth.answer(challenge, scope, self.transport.get_json):
                    resp = await self._send(method, url, hdrs, scope, send)
                else:
                    raise UpstreamError(self.name, 401, "authentication required and none succeeded")
            if resp.status == 429:
                raise UpstreamError(self.name, 429, "too many requests", resp.headers.get("Retry-After"))
            if resp.status >= 400:
                raise UpstreamError(self.name, resp.status, f"{method} {path} answered {resp.status}")
            if self.config.parent and not self._parent_warned:
                self._check_parent(resp.headers.get("X-Platproxy-Target", ""))
            self.reachable = True
            yield resp
        except UpstreamError as exc:
            self._failed(exc)
            raise
        finally:
            resp.release()

    def _check_parent(self, target: str) -> None:
        """A parent platproxy that resolved a tag for itself (it does not count this proxy as a
        child) would hand every node this proxy serves the parent's platform: said once, loudly."""
        if target and not target.startswith("index"):
            self._parent_warned = True
            log.warning("the parent resolved a tag for its own platform instead of passing the index: add this "
                        "proxy's address to the parent's [resolve] child_proxies", upstream=self.name,
                        parent_target=target)  # fmt: skip

    def _failed(self, exc: UpstreamError) -> None:
        if exc.unreachable:
            self.reachable = False
        if self.metrics is not None:
            self.metrics.upstream_error(self.name, exc.status)

    def fetched(self, nbytes: int) -> None:
        if self.metrics is not None:
            self.metrics.bytes_fetched.labels(self.name).inc(nbytes)

    async def _send(self, method: str, url: str, headers: dict[str, str], scope: str, send: Sender[A]) -> A:
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if origin_of(url) == self.origin:
                auth = self.auth.header(scope)
                if auth:
                    sent["Authorization"] = auth
            resp = await send(method, url, sent)
            if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                url = urljoin(url, resp.headers["Location"])
                resp.release()
                if urlsplit(url).scheme not in ("http", "https"):
                    raise UpstreamError(self.name, 502, "redirect to a non-HTTP location")
                continue
            return resp
        raise UpstreamError(self.name, 502, f"more than {MAX_REDIRECTS} redirects")

    # -- passthrough: the upstream's own challenge, checks and the token relay --------------------

    async def challenge(self) -> Challenge | None:
        """How the upstream asks for credentials (its ``/v2/`` answer without any), remembered
        for a while; ``None`` when it asks for none or cannot be reached."""
        known, until = self._challenge
        if until > time.monotonic():
            return known
        answer = await self._base_answer()
        if answer is None:
            return known
        status, header = answer
        found = Challenge.parse(header) if status == 401 else None
        self._challenge = (found, time.monotonic() + CHALLENGE_TTL)
        return found

    async def probe(self, repo: str, kind: str, reference: str = "") -> None:
        """May the current credential pull ``reference`` (a ``manifest`` or ``blob``; ``tags``:
        the repository; ``base``: anything) from ``repo``?  Returns on a yes; raises
        ``UpstreamError`` with the upstream's answer otherwise."""
        paths = {"manifest": f"/v2/{repo}/manifests/{reference}", "blob": f"/v2/{repo}/blobs/{reference}",
                 "tags": f"/v2/{repo}/tags/list?n=1", "base": "/v2/"}  # fmt: skip
        method = "GET" if kind in ("tags", "base") else "HEAD"
        headers = {"Accept": UPSTREAM_ACCEPT} if kind == "manifest" else None
        async with self.request(method, paths[kind], scope=_pull(repo) if repo else "", headers=headers):
            pass

    async def relay_token(
        self, method: str, params: list[tuple[str, str]], authorization: str
    ) -> tuple[int, bytes, str]:
        """A client's token request, passed to the upstream's own token service (with the
        ``service`` it names): ``(status, body, content type)`` as it answered.  Only to a realm
        on the upstream's own domain (nothing else is ever given the client's credentials) and
        without following redirects."""
        challenge = await self.challenge()
        if challenge is None or challenge.scheme != "bearer" or not self.auth.same_domain(challenge.realm):
            raise UpstreamError(self.name, 404, "has no token service on its own domain to relay to")
        params = [(k, v) for k, v in params if k != "service"] + [("service", challenge.service)]
        headers = {"Authorization": authorization} if authorization else {}
        body = urlencode(params) if method == "POST" else None
        url = challenge.realm if method == "POST" else f"{challenge.realm}?{urlencode(params)}"
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            session, proxy = self.transport.session, self.transport.proxy_for(url)
            async with session.request(method, url, data=body, headers=headers, allow_redirects=False,
                                       proxy=proxy) as resp:  # fmt: skip
                data = await read_limited(resp, MAX_TOKEN_ANSWER)
                if data is None:
                    raise UpstreamError(self.name, 502, "token answer larger than 64 KiB")
                return resp.status, data, resp.headers.get("Content-Type", "application/json")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(self.name, None, f"token service unreachable: {type(exc).__name__}") from None

    # -- the pull API --------------------------------------------------------------------------

    async def get_manifest(self, repo: str, reference: str, max_size: int) -> tuple[bytes, str, str | None]:
        """``(bytes, media type, Docker-Content-Digest header)``; refuses bodies over ``max_size``."""
        async with self.request(
            "GET", f"/v2/{repo}/manifests/{reference}", scope=_pull(repo), headers={"Accept": UPSTREAM_ACCEPT}
        ) as resp:
            data = None if (resp.content_length or 0) > max_size else await read_limited(resp, max_size)
            if data is None:
                raise UpstreamError(self.name, 413, f"manifest larger than {max_size} bytes")
            self.fetched(len(data))
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            return data, media_type, resp.headers.get("Docker-Content-Digest")

    async def head_manifest(self, repo: str, reference: str) -> ManifestHead | None:
        """The digest a tag points at, by HEAD (not counted by Docker Hub's pull limit)."""
        async with self.request(
            "HEAD", f"/v2/{repo}/manifests/{reference}", scope=_pull(repo), headers={"Accept": UPSTREAM_ACCEPT}
        ) as resp:
            digest = resp.headers.get("Docker-Content-Digest")
            if not digest:
                return None
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            return ManifestHead(digest, media_type, resp.content_length)

    @asynccontextmanager
    async def open_blob(self, repo: str, digest: str) -> AsyncIterator[aiohttp.ClientResponse]:
        async with self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=_pull(repo)) as resp:
            yield resp

    async def copy_blob(
        self,
        repo: str,
        digest: str,
        on_headers: Callable[[int | None], None],
        store: Callable[[memoryview], None],
        check: Callable[[memoryview], None],
        progress: Callable[[int], None],
    ) -> int:
        """GET a blob and copy its body to ``store`` and ``check``, by a worker thread where the
        transport allows (the bytes never pass through the event loop, ``wire`` says why), else on
        the loop; the caller does not choose and cannot tell.

        Auth, redirects and errors are decided on the loop, exactly as for ``request``; then
        ``on_headers`` gets the Content-Length (loop), ``store`` each piece of the body,
        ``progress`` the running total (from any thread: it must be thread-safe), ``check`` each
        piece too, in order (on a worker, a helper thread: see ``wire.pump``).  Returns the bytes
        copied.  A body cut short by the network raises ``UpstreamError`` (502); one that ended
        before its Content-Length returns short (the caller compares).  Cancelled, a worker is
        stopped and waited for before this returns: ``store`` and ``check`` are never called after.
        """
        counted = 0

        def report(total: int) -> None:
            nonlocal counted
            self.fetched(total - counted)
            counted = total
            progress(total)

        path = f"/v2/{repo}/blobs/{digest}"
        if not self.transport.bodies_off_loop:  # through an https forward proxy: copied on the loop
            async with self.request("GET", path, scope=_pull(repo)) as resp:
                on_headers(resp.content_length)
                total = 0
                async for chunk in resp.content.iter_chunked(CHUNK):
                    piece = memoryview(chunk)
                    store(piece)
                    check(piece)
                    total += len(chunk)
                    report(total)
                return total
        async with self._slots, self._request("GET", path, _pull(repo), None, self.transport.send_by_worker) as answer:
            on_headers(answer.content_length)
            try:
                return await wire.pump_on(self.transport.workers, answer, store, check, report)
            except (OSError, http.client.HTTPException) as exc:
                raise UpstreamError(self.name, 502, f"blob body cut: {type(exc).__name__}: {exc}") from None

    async def get_small_blob(self, repo: str, digest: str, limit: int) -> bytes | None:
        """A small blob's bytes (an image config), ``None`` when it is larger than ``limit``."""
        async with self.open_blob(repo, digest) as resp:
            return await read_limited(resp, limit)

    async def head_blob(self, repo: str, digest: str) -> int | None:
        async with self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=_pull(repo)) as resp:
            return resp.content_length

    async def tags(self, repo: str) -> list[str]:
        """The repository's tags; only names that are valid tags (an upstream's answer is text
        from another party: it ends up in a ``Link`` header and in records)."""
        async with self.request("GET", f"/v2/{repo}/tags/list", scope=_pull(repo)) as resp:
            data = await read_limited(resp, MAX_TAGS_SIZE)
        if data is None:
            raise UpstreamError(self.name, 413, f"tag list larger than {MAX_TAGS_SIZE} bytes")
        try:
            body = jsondoc.loads(data)
        except ValueError:
            raise UpstreamError(self.name, 502, "tag list is not JSON") from None
        tags = body.get("tags") if isinstance(body, dict) else None
        return [t for t in tags if isinstance(t, str) and TAG.match(t)] if isinstance(tags, list) else []

    async def referrers(self, repo: str, digest: str, query: str) -> tuple[bytes, dict[str, str]]:
        path = f"/v2/{repo}/referrers/{digest}" + (f"?{query}" if query else "")
        async with self.request("GET", path, scope=_pull(repo)) as resp:
            data = await read_limited(resp, MAX_REFERRERS_SIZE)
            if data is None:
                raise UpstreamError(self.name, 413, "referrers index larger than 4 MiB")
            keep = {k: resp.headers[k] for k in ("Content-Type", "OCI-Filters-Applied") if k in resp.headers}
            link = resp.headers.get("Link", "")
            if _LOCAL_LINK.fullmatch(link):  # the next page on this registry; never a link to elsewhere
                keep["Link"] = link
            return data, keep

    async def ping(self) -> bool:
        """Is the upstream answering at all (any HTTP status counts)."""
        answer = await self._base_answer()
        return answer is not None and answer[0] < 500

    async def _base_answer(self) -> tuple[int, str] | None:
        """The upstream's answer to an anonymous ``GET /v2/``: its status and ``WWW-Authenticate``
        (``None``: unreachable)."""
        try:
            async with self.transport.session.get(self.base + "/v2/", allow_redirects=False,
                                                  proxy=self.transport.proxy_for(self.base)) as resp:  # fmt: skip
                return resp.status, resp.headers.get("WWW-Authenticate", "")
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None


async def probe_status(up: Upstream, repo: str, kind: str, reference: str = "") -> int | None:
    """``Upstream.probe`` as an answer: 200 for a yes, the upstream's status for a no, ``None``
    when it cannot be reached (with the credential of the current context)."""
    try:
        await up.probe(repo, kind, reference)
        return 200
    except UpstreamError as exc:
        return None if exc.unreachable else exc.status


def _pull(repo: str) -> str:
    return f"repository:{repo}:pull"
