"""``/healthz`` (alive), ``/readyz`` (cache writable; upstreams reachable, per upstream) and
``/metrics``: outside ``/v2/``, on the main port or on their own (``[metrics] listen``)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from proxy.http.keys import SERVICES
from proxy.metrics import CONTENT_TYPE_LATEST, Metrics

MAIN: web.AppKey[web.Application] = web.AppKey("main", web.Application)
"""The application whose services are checked (the ops app on its own port points at the main one)."""

PING_TIMEOUT = 3.0


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    services = request.app[MAIN][SERVICES]
    status = services.blobs.cache_status()
    upstreams = list(services.manifests.upstreams.values())

    async def ping(up: Any) -> bool:
        try:
            return bool(await asyncio.wait_for(up.ping(), PING_TIMEOUT))
        except TimeoutError:
            return False

    reachable = await asyncio.gather(*(ping(up) for up in upstreams))
    body: dict[str, Any] = {
        "cache": {
            "writable": status.writable,
            "path": status.path,
            **({"error": status.problem} if status.problem else {}),
        },
        "upstreams": {up.name: {"reachable": ok, "url": up.base} for up, ok in zip(upstreams, reachable, strict=True)},
    }
    ready = status.writable
    described = status.backend
    if described is not None:  # a store beyond the cache directory: without it a replica serves almost nothing
        try:
            store_problem = await asyncio.wait_for(services.blobs.store_problem(), PING_TIMEOUT)
        except TimeoutError:
            store_problem = f"no answer within {PING_TIMEOUT}s"
        body["store"] = {**described, "reachable": not store_problem,
                         **({"error": store_problem} if store_problem else {})}  # fmt: skip
        ready = ready and not store_problem
    return web.json_response(body, status=200 if ready else 503)


def metrics_handler(metrics: Metrics) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handler


def add_routes(app: web.Application, main: web.Application, metrics: Metrics) -> None:
    app[MAIN] = main
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler(metrics))
