"""Wiring: the aiohttp application with its services, built from a ``Config``."""

from __future__ import annotations

import logging
import sys

import structlog
from aiohttp import web

from hostinfo import HostProfile
from hostinfo.probe import host_profile
from proxy.api import SERVICES, Services, dispatch, errors_middleware
from proxy.blobs import BlobService
from proxy.config import Config
from proxy.fill import Fills
from proxy.manifests import ManifestService
from proxy.store import ContentStore
from proxy.tagindex import TagIndex
from proxy.upstream import Upstream

CONFIG: web.AppKey[Config] = web.AppKey("config", Config)


def configure_logging(level: str = "info") -> None:
    """JSON lines when not on a terminal, readable console output on one."""
    renderer = structlog.dev.ConsoleRenderer() if sys.stderr.isatty() else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


def host_for(config: Config) -> HostProfile:
    p = config.platform
    return host_profile(p.override, p.features, p.ia32, p.aarch32)


def build_app(config: Config, host: HostProfile | None = None) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=1024)
    app[CONFIG] = config
    app["config"] = config
    profile = host if host is not None else host_for(config)

    async def start(app: web.Application) -> None:
        root = config.cache.path()
        root.mkdir(parents=True, exist_ok=True)
        store = ContentStore(root)
        tags = TagIndex(root / "index.db")
        upstreams = {u.name: Upstream(u, config.limits) for u in config.upstreams}
        fills = Fills(store)
        app[SERVICES] = Services(
            ManifestService(config, store, tags, upstreams, profile), BlobService(store, fills, upstreams)
        )
        app["fills"] = fills
        app["tags"] = tags

    async def stop(app: web.Application) -> None:
        services: Services = app[SERVICES]
        await app["fills"].close()
        for up in services.manifests.upstreams.values():
            await up.close()
        app["tags"].close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
