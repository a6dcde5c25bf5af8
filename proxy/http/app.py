"""Wiring: the aiohttp application with its services, built from a ``Config``, and the runner."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from hostinfo import HostProfile
from proxy.config import Config
from proxy.http import fleet, health, nodes
from proxy.http.auth import Htpasswd, auth_middleware
from proxy.http.guard import guard
from proxy.http.handlers import cacheability, dispatch, errors_middleware
from proxy.http.keys import CONFIG, FILLS, METRICS, SERVICES, Services
from proxy.http.passthrough import TOKEN_PATH, token_relay
from proxy.http.peer import build_peer_app
from proxy.http.tls import CertificateWatcher, TlsRelaySite, relay_threads, server_context
from proxy.metrics import Metrics
from proxy.pull.access import Access
from proxy.pull.blobs import BlobService
from proxy.pull.canary import Checks
from proxy.pull.fills import Fills
from proxy.pull.fleetlog import FleetLog
from proxy.pull.manifests import ManifestService
from proxy.pull.members import Members
from proxy.pull.registrations import Registrations
from proxy.pull.targets import Targets
from proxy.registry.client import Upstream
from proxy.storage.factory import Storage, open_storage
from proxy.tlsrelay import TlsRelay

STORAGE: web.AppKey[Storage] = web.AppKey("storage", Storage)
FLEET_EVERY = 30.0
"""How often the pulls counted for the fleet view are written to the records (at most; a tier
that shares them more often writes them as often): rarely, since every write grows the index's
write-ahead log that each tag hit then reads past (``/fleet`` shows what is not written yet)."""
HTPASSWD: web.AppKey[Htpasswd] = web.AppKey("htpasswd", Htpasswd)


def build_app(config: Config, host: HostProfile | None = None) -> web.Application:
    middlewares: list[Middleware] = [errors_middleware]
    htpasswd = Htpasswd(Path(config.auth.htpasswd)) if config.auth.htpasswd else None
    if htpasswd is not None:
        middlewares.append(auth_middleware(htpasswd, config.auth.realm))
    app = web.Application(middlewares=middlewares, client_max_size=1024)
    if htpasswd is not None:  # (the app exists only now: SIGHUP finds the file here)
        app[HTPASSWD] = htpasswd
    metrics = Metrics()
    app[CONFIG] = config
    app[METRICS] = metrics
    profile = host if host is not None else config.platform.profile()

    async def start(app: web.Application) -> None:
        storage = await open_storage(config, config.cache.path(), metrics)
        upstreams = {u.name: Upstream(u, config.limits, metrics) for u in config.upstreams}
        fills = Fills(storage.store)
        metrics.fills_in_flight.set_function(lambda: len(fills.active))
        members = Members(storage.tags.index, upstreams)
        blobs = BlobService(storage.store, fills, upstreams, members, config.limits)
        storage.apply_budget(
            config.cache.max_size,
            busy=lambda: set(fills.active) | set(blobs.in_use),
            unreachable=lambda: {name for name, up in upstreams.items() if not up.reachable},
        )
        manifests = ManifestService(config, storage.store, storage.tags, upstreams, profile, metrics, members=members)
        registrations = Registrations(storage.nodes, config.resolve.registration_ttl)
        targets = Targets(config, profile, registrations.platform_of)
        registrations.on_change = targets.forget
        registrations.start(config.store.s3.nodes_every)
        metrics.node_registrations.set_function(lambda: len(registrations.live()))
        fleet_log = FleetLog(storage.fleet, metrics)
        fleet_log.start(min(FLEET_EVERY, config.store.s3.pull_times_every), config.store.s3.pull_times_every)
        app[SERVICES] = Services(manifests, blobs, targets, Access(upstreams, members), members, registrations,
                                 Checks(), fleet_log)  # fmt: skip
        app[FILLS] = fills
        app[STORAGE] = storage

    async def stop(app: web.Application) -> None:
        services: Services = app[SERVICES]
        await services.registrations.close()
        await services.fleet.close()
        await app[FILLS].close()
        for up in services.manifests.upstreams.values():
            await up.close()
        await app[STORAGE].close()

    app.on_startup.append(start)
    app.on_response_prepare.append(cacheability)
    app.on_cleanup.append(stop)
    if not config.metrics.listen:
        health.add_routes(app, app, metrics)
        fleet.add_routes(app, app)
    if any(u.auth == "passthrough" for u in config.upstreams):
        app.router.add_route("*", TOKEN_PATH, token_relay)
        app.router.add_route("*", TOKEN_PATH + "/{ns}", token_relay)
    nodes.add_routes(app)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def build_ops_app(main: web.Application) -> web.Application:
    """/healthz, /readyz and /metrics alone, for ``[metrics] listen`` on another port."""
    ops = web.Application()
    health.add_routes(ops, main, main[METRICS])
    fleet.add_routes(ops, main)
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


class StartError(RuntimeError):
    """The server could not start: the message names what (the cache directory, the address)."""


async def serve(config: Config, host: HostProfile, on_ready: Callable[[], None] = lambda: None) -> None:
    """Run until SIGINT/SIGTERM, then close connections and upstream sessions.

    ``on_ready`` runs once every socket is bound (the banner: it must not claim an address that
    is taken).  SIGHUP re-reads what can change under a running server (the htpasswd file, the
    TLS pair) and says so; everything else in the config needs a restart, and the log says that
    too, rather than exiting (systemd's ``Restart=on-failure`` would not bring it back)."""
    app = build_app(config, host)
    log = structlog.get_logger("platproxy")
    # Bounded before anything else runs (authentication included): what is over the limits is
    # answered by guard's handle_error with an OCI error body.
    limits = config.limits
    runners = [
        web.AppRunner(app, access_log=None, max_line_size=limits.max_header_line,
                      max_field_size=limits.max_header_line, max_headers=limits.max_headers,
                      keepalive_timeout=limits.idle_timeout)
    ]  # fmt: skip
    try:
        await runners[0].setup()  # opens the cache
    except OSError as exc:
        raise StartError(f"cache directory {config.cache.path()}: {exc.strerror or exc}") from None
    guard(runners[0], limits.header_timeout, limits.max_partial_per_client)
    raise_open_files_limit()
    ssl_context = server_context(config.tls) if config.tls.cert else None
    relay = None
    if ssl_context is None:
        sites: list[tuple[str, web.BaseSite | TlsRelaySite]] = [
            (config.listen, web.TCPSite(runners[0], config.listen_host, config.listen_port, backlog=LISTEN_BACKLOG))
        ]
    else:  # TLS is encrypted on relay threads, not on the loop (proxy.tlsrelay says why)
        relay = TlsRelay(ssl_context, threads=relay_threads(), handshake_timeout=limits.header_timeout)
        sites = [
            (config.listen, TlsRelaySite(relay, runners[0], config.listen_host, config.listen_port, LISTEN_BACKLOG))
        ]
    if config.metrics.listen:
        ops = web.AppRunner(build_ops_app(app), access_log=None)
        await ops.setup()
        runners.append(ops)
        sites.append((config.metrics.listen, _site(ops, config.metrics.listen)))
    s3 = config.store.s3
    if config.store.backend == "s3" and s3.peer_listen:  # the tier's internal port: never the client's
        peers = web.AppRunner(build_peer_app(app, s3.peer_secret), access_log=None)
        await peers.setup()
        runners.append(peers)
        sites.append((s3.peer_listen, _site(peers, s3.peer_listen)))
    stop = asyncio.Event()
    received: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_log_loop_error)

    def stopping(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping, sig)
    watcher = CertificateWatcher(ssl_context, config.tls) if ssl_context is not None else None
    loop.add_signal_handler(signal.SIGHUP, lambda: reload(app, watcher))
    watching: asyncio.Task[None] | None = None
    try:
        for address, site in sites:
            try:
                await site.start()
            except OSError as exc:
                raise StartError(f"cannot listen on {address}: {exc.strerror or exc}") from None
        if watcher is not None:
            watching = asyncio.create_task(watcher.run())
        on_ready()
        await stop.wait()
        log.info("stopping", signal=received[0] if received else "", draining="open requests end, then exit")
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        if watching is not None:
            watching.cancel()
        if relay is not None:
            relay.stop_accepting()
        for runner in reversed(runners):
            await runner.cleanup()
        if relay is not None:
            await asyncio.get_running_loop().run_in_executor(None, relay.close)
    log.info("stopped")


def _site(runner: web.AppRunner, address: str) -> web.TCPSite:
    """A site of ``runner`` on ``HOST:PORT`` (``[::1]:PORT`` for IPv6)."""
    host, _, port = address.rpartition(":")
    return web.TCPSite(runner, host.strip("[]"), int(port))


def reload(app: web.Application, watcher: CertificateWatcher | None) -> None:
    """SIGHUP: re-read the htpasswd file and the TLS pair now (both are also re-read when they
    change); a bad new file is logged and the current one kept."""
    log = structlog.get_logger("platproxy")
    done = []
    htpasswd: Htpasswd | None = app.get(HTPASSWD)
    if htpasswd is not None:
        if htpasswd.refresh(force=True, context="SIGHUP: "):
            done.append(f"htpasswd ({len(htpasswd.users)} users)")
        else:
            done.append("htpasswd (not reloaded, the current one kept)")
    if watcher is not None:
        done.append("certificate (new pair loaded)" if watcher.poll() else "certificate (unchanged)")
    log.info("SIGHUP", reread=", ".join(done) or "nothing (no htpasswd, no TLS)",
             other_settings="take effect on restart")  # fmt: skip
