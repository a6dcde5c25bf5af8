"""The fleet view at the HTTP edge: each tag answer counted (``observe``, ``observe_missing``),
``/fleet`` (the page) and ``/fleet.json`` (the report it reads: the same as ``platproxy report
--json``), served beside ``/metrics`` (on ``[metrics] listen`` when one is set) and under the
same rules.  ``/fleet.json`` takes ``image`` (a glob), ``platform``, ``outcome``, ``since``
(``7d``) and ``target`` (what-if platforms, repeatable)."""

from __future__ import annotations

import time

from aiohttp import web

from hostinfo import preference_vector
from proxy.config import ConfigError
from proxy.config.values import parse_duration
from proxy.errors import NothingRuns
from proxy.fleet.outcomes import DEGRADED, OUTCOMES, Outcome, classify
from proxy.fleet.page import page_html
from proxy.http.health import MAIN
from proxy.http.keys import SERVICES, Services
from proxy.pull.fleetlog import UnknownTarget, fleet_report
from proxy.pull.manifests import ManifestAnswer
from proxy.pull.route import Route
from proxy.pull.targets import Target


def _image(r: Route, tag: str) -> str:
    return f"{r.upstream.name}/{r.repo}:{tag}"


def observe(services: Services, r: Route, tag: str, target: Target, answer: ManifestAnswer) -> None:
    """A tag answered for ``target``: what it got, counted (an index handed on unresolved is not
    a resolution, and is not counted)."""
    resolution = answer.resolution
    if not target.resolves or resolution is None:
        return
    outcome = classify(target.platform, resolution.platform, resolution.label)
    services.fleet.note(_image(r, tag), target.platform, target.source, outcome, resolution.index_digest,
                        answer.digest, resolution.platform, resolution.label)  # fmt: skip


def observe_missing(services: Services, r: Route, tag: str, target: Target, error: NothingRuns) -> None:
    if target.resolves:
        services.fleet.note(_image(r, tag), target.platform, target.source, Outcome("missing"), error.index_digest,
                            reason=error.message)  # fmt: skip


async def fleet_page(request: web.Request) -> web.Response:
    return web.Response(body=page_html(), content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP})  # fmt: skip


CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'"
"""The page may reach nothing but the mirror that served it."""


async def fleet_json(request: web.Request) -> web.Response:
    services: Services = request.app[MAIN][SERVICES]
    query = request.query
    outcomes = tuple(query.getall("outcome", []))
    unknown = [o for o in outcomes if o not in (*OUTCOMES, "degraded")]
    try:
        if unknown:
            raise ValueError(f"outcome {unknown[0]!r}: one of {', '.join(OUTCOMES)}, degraded")
        since = time.time() - parse_duration(query["since"]) if "since" in query else 0.0
        records, problems = await services.fleet.everywhere()
        if "degraded" in outcomes:
            outcomes = (*[o for o in outcomes if o != "degraded"], *DEGRADED)
        report = await fleet_report(
            records, services.manifests.content.stored, images=query.get("image", "*") or "*",
            platforms=tuple(query.getall("platform", [])), outcomes=outcomes, since=since,
            targets=tuple(query.getall("target", [])), now=time.time(),
        )  # fmt: skip
    except (ValueError, UnknownTarget, ConfigError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    host = services.manifests.host
    runs = [f"{s} ({s.label})" for s in preference_vector(host)]
    body = {**report.to_json(), "problems": problems, "host": {"platform": str(host.platform), "runs": runs}}
    return web.json_response(body, headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application, main: web.Application) -> None:
    app[MAIN] = main
    app.router.add_get("/fleet", fleet_page)
    app.router.add_get("/fleet.json", fleet_json)
