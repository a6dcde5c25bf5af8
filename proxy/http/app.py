"""Wiring: the aiohttp application with its services, built from a ``Config``, and the runner."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from hostinfo import HostProfile
from proxy.config import Config
from proxy.http import health
from proxy.http.auth import Htpasswd, auth_middleware
from proxy.http.guard import guard
from proxy.http.handlers import CONFIG, METRICS, SERVICES, Services, dispatch, errors_middleware
from proxy.http.tls import CertificateWatcher, server_context
from proxy.metrics import Metrics
from proxy.pull.blobs import BlobService
from proxy.pull.fills import Fills
from proxy.pull.manifests import ManifestService
from proxy.pull.targets import Targets
from proxy.registry.client import Upstream
from proxy.storage.factory import Storage, open_storage

FILLS: web.AppKey[Fills] = web.AppKey("fills", Fills)
STORAGE: web.AppKey[Storage] = web.AppKey("storage", Storage)


def build_app(config: Config, host: HostProfile | None = None) -> web.Application:
    middlewares: list[Middleware] = [errors_middleware]
    if config.auth.htpasswd:
        middlewares.append(auth_middleware(Htpasswd(Path(config.auth.htpasswd)), config.auth.realm))
    app = web.Application(middlewares=middlewares, client_max_size=1024)
    metrics = Metrics()
    app[CONFIG] = config
    app[METRICS] = metrics
    profile = host if host is not None else config.platform.profile()

    async def start(app: web.Application) -> None:
        storage = await open_storage(config, config.cache.path(), metrics)
        upstreams = {u.name: Upstream(u, config.limits, metrics) for u in config.upstreams}
        fills = Fills(storage.store)
        blobs = BlobService(storage.store, fills, upstreams)
        storage.apply_budget(
            config.cache.max_size,
            busy=lambda: set(fills.active) | set(blobs.in_use),
            unreachable=lambda: {name for name, up in upstreams.items() if not up.reachable},
        )
        manifests = ManifestService(config, storage.store, storage.tags, upstreams, profile, metrics)
        app[SERVICES] = Services(manifests, blobs, Targets(config, profile))
        app[FILLS] = fills
        app[STORAGE] = storage

    async def stop(app: web.Application) -> None:
        services: Services = app[SERVICES]
        await app[FILLS].close()
        for up in services.manifests.upstreams.values():
            await up.close()
        await app[STORAGE].close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    if not config.metrics.listen:
        health.add_routes(app, app, metrics)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def build_ops_app(main: web.Application) -> web.Application:
    """/healthz, /readyz and /metrics alone, for ``[metrics] listen`` on another port."""
    ops = web.Application()
    health.add_routes(ops, main, main[METRICS])
    return ops


LISTEN_BACKLOG = 4096
"""Room for a burst of connections (every node of a fleet at once); asyncio's default is 100."""


def raise_open_files_limit() -> None:
    """Every client connection and every open blob is a descriptor: use all the system allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Errors nobody awaited (aiohttp's client leaves one when a peer closes mid-request): one
    log line with what failed, instead of asyncio's multi-line traceback on stderr."""
    error = context.get("exception")
    structlog.get_logger("platproxy").warning(
        "background error", message=context.get("message", ""),
        error=f"{type(error).__name__}: {error}" if error is not None else "",
    )  # fmt: skip


async def serve(config: Config, host: HostProfile) -> None:
    """Run until SIGINT/SIGTERM, then close connections and upstream sessions."""
    app = build_app(config, host)
    # Header lines up to 64 KiB reach platproxy's own checks (an OCI error body) instead of
    # aiohttp's plain-text 400 at its 8 KiB default; longer ones still get that 400.
    runners = [
        web.AppRunner(app, access_log=None, max_line_size=65536, max_field_size=65536,
                      keepalive_timeout=config.limits.idle_timeout)
    ]  # fmt: skip
    await runners[0].setup()
    guard(runners[0], config.limits.header_timeout)
    raise_open_files_limit()
    ssl_context = server_context(config.tls) if config.tls.cert else None
    sites = [web.TCPSite(runners[0], config.listen_host, config.listen_port, backlog=LISTEN_BACKLOG,
                         ssl_context=ssl_context)]  # fmt: skip
    if config.metrics.listen:
        ops = web.AppRunner(build_ops_app(app), access_log=None)
        await ops.setup()
        runners.append(ops)
        host_part, _, port = config.metrics.listen.rpartition(":")
        sites.append(web.TCPSite(ops, host_part.strip("[]"), int(port)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_log_loop_error)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher: asyncio.Task[None] | None = None
    try:
        for site in sites:
            await site.start()
        if ssl_context is not None:
            watcher = asyncio.create_task(CertificateWatcher(ssl_context, config.tls).run())
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        for runner in reversed(runners):
            await runner.cleanup()
