"""How requests reach one upstream: the HTTP session, TLS, forward proxies and the worker threads
that read blob bodies off the event loop, kept apart from what the requests mean (the registry
API, auth, redirects and errors are ``proxy.registry.client``'s), as httpx keeps its transports
apart from its client.

- **On the loop**: aiohttp, for everything whose body is small or read by the caller.
- **On a worker thread**: ``proxy.wire`` reads a blob's body, writes and hashes it, so that the
  bytes never pass through the event loop; not through an ``https://`` forward proxy (TLS inside
  TLS, which ``http.client`` does not do), where the loop copies.
- **Where credentials may go** is decided by the client; ``origin_of`` is the comparison it uses.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp
from multidict import MultiMapping

from proxy import wire
from proxy.config import LimitsConfig, UpstreamConfig
from proxy.errors import UpstreamError


class Answer(Protocol):
    """An upstream's answer, from aiohttp (on the loop) or ``wire`` (a fill worker)."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> MultiMapping[str]: ...
    def release(self) -> Any: ...


A = TypeVar("A", bound=Answer)
Sender = Callable[[str, str, dict[str, str]], Awaitable[A]]
"""Sends one request (method, URL, headers) without following redirects; ``UpstreamError`` when
the upstream cannot be reached."""


class Transport:
    """One upstream's connections: a session made on first use (or given: tests bind one to an
    in-process registry), the TLS context, the forward proxy per URL, and the fill workers."""

    def __init__(self, config: UpstreamConfig, limits: LimitsConfig, session: aiohttp.ClientSession | None = None):
        self.config = config
        self.name = config.name
        self.limits = limits
        self._session = session
        self._own_session = session is None
        self._env_proxies: dict[tuple[str, str], str | None] = {}
        self._workers: ThreadPoolExecutor | None = None
        self._context: ssl.SSLContext | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=self.limits.connect_timeout, sock_read=self.limits.read_timeout
            )
            connector = aiohttp.TCPConnector(ssl=self.tls_context) if self.config.ca else None
            self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False, trust_env=False,
                                                  connector=connector)  # fmt: skip
        return self._session

    @property
    def tls_context(self) -> ssl.SSLContext:
        """The system's CAs, and the upstream's ``ca`` (checked at start: serve refuses a bad file)."""
        if self._context is None:
            self._context = ssl.create_default_context()
            if self.config.ca:
                self._context.load_verify_locations(cafile=self.config.ca)
        return self._context

    def proxy_for(self, url: str) -> str | None:
        """The forward proxy to reach ``url`` through (``None``: directly), from ``proxy``.

        With ``env``, the environment's ``HTTPS_PROXY``/``HTTP_PROXY`` for the URL's scheme unless
        ``NO_PROXY`` names its host (the standard library's reading of those variables, which
        curl and Go share).  aiohttp's own ``trust_env`` is not used: it would also send
        ``~/.netrc`` credentials.  Over https the proxy carries an encrypted tunnel (CONNECT):
        the upstream's credentials never reach it."""
        setting = self.config.proxy
        if setting != "env":
            return setting or None
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key not in self._env_proxies:  # read once per host: not a scan of the environment per request
            bypass = urllib.request.proxy_bypass(parts.netloc)
            self._env_proxies[key] = None if bypass else urllib.request.getproxies_environment().get(parts.scheme)
        return self._env_proxies[key]

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        if self._workers is not None:
            self._workers.shutdown(wait=False, cancel_futures=True)

    async def send_here(self, method: str, url: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
        """One request on the event loop (aiohttp)."""
        try:
            return await self.session.request(method, url, headers=headers, allow_redirects=False,
                                              proxy=self.proxy_for(url))  # fmt: skip
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self.unreachable(exc) from None

    async def send_by_worker(self, method: str, url: str, headers: dict[str, str]) -> wire.WireAnswer:
        """One request from a fill worker thread: its status and headers, the body left unread."""
        dial = wire.Dial(lambda: self.tls_context, self.limits.connect_timeout, self.limits.read_timeout,
                         self.proxy_for(url))  # fmt: skip
        try:
            return await wire.open_on(self.workers, method, url, headers, dial)
        except (OSError, http.client.HTTPException) as exc:
            raise self.unreachable(exc) from None

    def unreachable(self, exc: Exception) -> UpstreamError:
        return UpstreamError(self.name, None, f"unreachable: {type(exc).__name__}: {exc}")

    @property
    def workers(self) -> ThreadPoolExecutor:
        """The fill workers: at most ``max_upstream_fetches``, as many as fetches may run at once."""
        if self._workers is None:
            self._workers = ThreadPoolExecutor(self.limits.max_upstream_fetches, f"fill-{self.name}")
        return self._workers

    @property
    def bodies_off_loop(self) -> bool:
        """Can blob bodies be read by worker threads?  Not through an ``https://`` forward proxy
        (TLS inside TLS, which ``http.client`` does not do): those stay on the loop."""
        setting = self.config.proxy
        if setting == "env":
            return not any(v.startswith("https:") for v in urllib.request.getproxies_environment().values())
        return not setting.startswith("https:")

    async def get_json(self, url: str, headers: dict[str, str]) -> Any:
        """A GET's JSON answer, redirects not followed; ``None`` unless it gave one with a 200."""
        try:
            async with self.session.get(url, headers=headers, allow_redirects=False,
                                        proxy=self.proxy_for(url)) as resp:  # fmt: skip
                return await resp.json(content_type=None) if resp.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            return None


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or ``None`` as soon as it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_any():
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def origin_of(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with the scheme's default port filled in: where credentials may go."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port
