"""TLS on the client listener: the certificate, the optional client CA, and their rotation.

A central mirror is reached over a network, and htpasswd credentials must not cross it in
clear.  ``server_context`` builds the listener's context (TLS 1.2+, HTTP/1.1 by ALPN, client
certificates required when ``client_ca`` is set).  ``CertificateWatcher`` re-reads the files when
they change (cert-manager and ACME clients replace them in place): the new pair is first loaded
into a scratch context, and only a pair that loads and matches is put into the live context, so
a half-written rotation (certificate before key) never breaks the listener.  Connections already
open keep their session; new ones get the new certificate.

``check`` is what ``config check`` and ``serve`` say about the files before starting: missing,
unreadable, not PEM, a key that does not match, an expired certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import ssl
from pathlib import Path

import structlog
from aiohttp import web

from proxy.config import Config, TlsConfig
from proxy.tlsrelay import TlsRelay

log = structlog.get_logger("platproxy.tls")

Signature = tuple[tuple[int, int, int], ...]


class TlsError(ValueError):
    """A certificate, key or CA file platproxy cannot serve with; the message says which and why."""


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    _load_pair(ctx, tls)
    if tls.client_ca:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"[tls] client_ca {tls.client_ca}: {_reason(exc)}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _load_pair(ctx: ssl.SSLContext, tls: TlsConfig) -> None:
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            raise TlsError(f"[tls] cert {tls.cert} / [tls] key {tls.key}: {_reason(exc)}") from None
        unreadable = [f"[tls] {k} {p}" for k, p in (("cert", tls.cert), ("key", tls.key)) if not os.access(p, os.R_OK)]
        raise TlsError(f"{' / '.join(unreadable) or f'[tls] cert {tls.cert}'}: {exc.strerror or exc}") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            return "the key does not match the certificate"
        return reason.replace("_", " ").lower()
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def not_after(cert: str) -> datetime.datetime:
    """The expiry of the first (the server's) certificate in the PEM file."""
    from cryptography import x509  # imported when TLS is configured, not for every start

    try:
        return x509.load_pem_x509_certificates(Path(cert).read_bytes())[0].not_valid_after_utc
    except OSError as exc:
        raise TlsError(f"[tls] cert {cert}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise TlsError(f"[tls] cert {cert}: not a PEM certificate ({exc})") from None


def check(tls: TlsConfig, now: datetime.datetime | None = None) -> datetime.datetime | None:
    """The certificate's expiry (None without TLS); ``TlsError`` when the listener could not
    serve with these files."""
    if not tls.cert:
        return None
    expires = not_after(tls.cert)
    server_context(tls)
    now = now or datetime.datetime.now(datetime.UTC)
    if expires <= now:
        raise TlsError(f"[tls] cert {tls.cert}: the certificate expired on {expires:%Y-%m-%d %H:%M} UTC")
    return expires


def check_files(config: Config) -> None:
    """The listener's pair and every upstream's ``ca``: what ``serve`` and ``config check`` refuse."""
    check(config.tls)
    for i, upstream in enumerate(config.upstreams):
        if upstream.ca:
            try:
                ssl.create_default_context().load_verify_locations(cafile=upstream.ca)
            except (OSError, ssl.SSLError) as exc:
                raise TlsError(f"[[upstream]] {i} ca {upstream.ca}: {_reason(exc)}") from None


def signature(paths: list[str]) -> Signature:
    """What changes when a file is replaced or rewritten: inode, size, modification time."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((0, 0, 0))
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class CertificateWatcher:
    """Polls the certificate and key files; puts a new, valid pair into the live context."""

    def __init__(self, ctx: ssl.SSLContext, tls: TlsConfig) -> None:
        self.ctx = ctx
        self.tls = tls
        self.paths = [tls.cert, tls.key]
        self.seen = signature(self.paths)

    def poll(self) -> bool:
        """One check; True when a new pair was put in place."""
        now = signature(self.paths)
        if now == self.seen:
            return False
        try:
            expires = check(self.tls)  # a scratch context first: the live one never gets a half-rotated pair
        except TlsError as exc:
            log.warning("new certificate not loaded; keeping the current one", error=str(exc))
            return False  # seen is not updated: the next poll tries again (the key may follow)
        _load_pair(self.ctx, self.tls)
        self.seen = now
        log.info("certificate reloaded", cert=self.tls.cert, expires=f"{expires:%Y-%m-%d}")
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tls.reload_interval)
            with contextlib.suppress(TlsError):
                self.poll()


def relay_threads() -> int:
    """TLS relay threads: one per core, at least 2, at most 8.  Measured on 2 cores
    (``bench/tls.py``): 2 and 4 threads send the same within this machine's noise."""
    return max(2, min(8, os.cpu_count() or 2))


class TlsRelaySite:
    """The client listener with TLS: like aiohttp's ``TCPSite``, but accepted for ``TlsRelay``,
    whose threads encrypt; the runner's protocol serves the plain side of each connection."""

    def __init__(self, relay: TlsRelay, runner: web.AppRunner, host: str | None, port: int, backlog: int) -> None:
        self.relay, self.runner, self.host, self.port, self.backlog = relay, runner, host, port, backlog

    async def start(self) -> None:
        assert self.runner.server is not None
        await self.relay.start(self.host, self.port, self.backlog, self.runner.server)
