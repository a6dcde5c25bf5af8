"""The HTTP layer: parse and check the request, call a service, write the answer.

Handlers stay thin; decisions live in ``manifests``, ``blobs``, ``resolve`` and ``freshness``.
The path is parsed from the raw (still percent-encoded) request path: a ``%`` anywhere is
refused, since no valid name, tag or digest contains one, so ``%2e%2e`` or ``%2f`` can never
turn into a path.  Every error is an OCI error body; an unexpected exception is logged and
answered with a generic 500 body, never a traceback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

import structlog
from aiohttp import web

from proxy.errors import (
    Denied,
    InvalidName,
    InvalidPagination,
    ManifestUnknown,
    NameUnknown,
    NothingRuns,
    PlatproxyError,
    Unsupported,
)
from proxy.http import passthrough
from proxy.http.blobs import blob
from proxy.http.errors import answer_for, error_body
from proxy.http.fleet import observe, observe_missing
from proxy.http.keys import CONFIG, METRICS, SERVICES, Services
from proxy.http.nodes import canary
from proxy.http.record import record
from proxy.metrics import Metrics
from proxy.oci.clients import classify
from proxy.oci.mediatypes import IMAGE_TYPES, ClientCaps
from proxy.oci.names import TAG, check_digest, check_name, is_digest
from proxy.pull.canary import nonce_of
from proxy.pull.manifests import ManifestAnswer
from proxy.pull.policy import judge
from proxy.pull.route import Route, route
from proxy.pull.targets import NODE_HEADER
from proxy.registry.client import RESOLVE_HEADER
from proxy.registry.credentials import CLIENT_CREDENTIAL

log = structlog.get_logger("platproxy.http")

_ENDPOINT = re.compile(r"^(?P<name>.+?)/(?P<kind>manifests|blobs|referrers)/(?P<ref>[^/]+)$")
_TAGS = re.compile(r"^(?P<name>.+)/tags/list$")
_UPLOADS = re.compile(r"^.+/blobs/uploads(?:/.*)?$")
MAX_PATH = 2048
READ_METHODS = ("GET", "HEAD")


def _json_error(exc: PlatproxyError) -> web.Response:
    answer = answer_for(exc)
    return web.Response(status=answer.status, body=answer.body(), content_type="application/json",
                        headers=answer.headers)  # fmt: skip


def _route_of(path: str) -> str:
    """A low-cardinality name for the metrics label."""
    if path in ("/v2", "/v2/"):
        return "base"
    for marker, name in (("/manifests/", "manifests"), ("/blobs/uploads", "uploads"), ("/blobs/", "blobs"),
                         ("/tags/list", "tags"), ("/referrers/", "referrers")):  # fmt: skip
        if marker in path:
            return name
    return "other"


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.monotonic()
    try:
        response = await handler(request)
    except PlatproxyError as exc:
        response = _json_error(exc)
    except web.HTTPException as exc:
        response = web.Response(status=exc.status, body=error_body("UNSUPPORTED", exc.reason),
                                content_type="application/json")  # fmt: skip
    except ConnectionResetError:  # the client left before its answer began (a cold blob's fill goes on)
        record(request).add_cache("client left")
        response = web.Response(status=499)  # nginx's "client closed request": for the log, never sent
    except Exception:
        log.exception("unexpected error", method=request.method, path=request.path[:300])
        response = web.Response(status=500, body=error_body("UNKNOWN", "internal error; see the server log"),
                                content_type="application/json")  # fmt: skip
    route_name = _route_of(request.path)
    if not response.prepared:
        response.headers.setdefault("Docker-Distribution-API-Version", "registry/2.0")
    done = record(request)
    outcome = done.cache
    sent = done.sent if done.sent is not None else response.content_length or 0
    if request.method == "HEAD":
        sent = 0
    metrics: Metrics = request.app[METRICS]
    metrics.requests.labels(route_name, request.method, str(response.status)).inc()
    if outcome:
        metrics.cache_outcomes.labels(route_name, outcome.split(",")[0]).inc()
        metrics.coalesced.inc(outcome == "coalesced")
        metrics.stale.inc(outcome == "stale")
    metrics.bytes_served.labels(route_name).inc(sent)
    metrics.request_seconds.labels(route_name).observe(time.monotonic() - started)
    log.info(
        "request", method=request.method, path=request.path[:300], status=response.status, bytes=sent,
        cache=outcome, duration_ms=round((time.monotonic() - started) * 1000, 1), **done.log_fields(),
    )  # fmt: skip
    return response


VARY = f"Accept, User-Agent, {RESOLVE_HEADER}, {NODE_HEADER}"
"""What a manifest answer, or its error, depends on: old engines, index tools, list-blind clients
and clients of other platforms read the same name differently; a child proxy asks for the index."""


async def cacheability(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` (every answer, streamed blobs too): tell an HTTP cache in front
    what an answer depends on.  Manifest answers (errors included:
    "nothing runs here" is one platform's answer) vary by ``VARY``; an answer that depends on who
    asks in a way no header shows (the address, for ``[[clients]]`` rules) or that needed the
    client's credentials (passthrough, htpasswd) is ``private``: no shared cache may keep it."""
    config = request.app[CONFIG]
    done = record(request)
    if _route_of(request.path) == "manifests":
        response.headers["Vary"] = VARY
        if config.clients:
            response.headers["Cache-Control"] = "private"
    private_content = done.auth and not done.auth.startswith("public")
    if private_content or done.user or (config.auth.htpasswd and request.path.startswith("/v2")):
        response.headers["Cache-Control"] = "private"


async def dispatch(request: web.Request) -> web.StreamResponse:
    raw = request.raw_path.split("?", 1)[0]
    services: Services = request.app[SERVICES]
    if raw in ("/v2", "/v2/"):
        if request.method not in READ_METHODS:
            raise Unsupported(request.method, raw)
        upstream = passthrough.ping_upstream(request.app[CONFIG], request.query.get("ns"))
        if upstream.auth == "passthrough":
            await passthrough.ping(request, services.access, services.access.upstreams[upstream.name])
        return web.json_response({})
    if not raw.startswith("/v2/"):
        raise NameUnknown("not a registry API path", {"path": raw[:300]})
    if len(raw) > MAX_PATH or "%" in raw or "\\" in raw:
        raise InvalidName("invalid characters or length in the request path", {"path": raw[:300]})
    tail = raw[len("/v2/") :]
    if any(segment in ("", ".", "..") for segment in tail.rstrip("/").split("/")):
        raise InvalidName("empty, '.' or '..' path segment", {"path": raw[:300]})
    if _UPLOADS.match(tail):
        raise Unsupported(request.method, raw)
    tags = _TAGS.match(tail)
    m = _ENDPOINT.match(tail)
    if tags is None and m is None:
        raise NameUnknown("unknown registry API endpoint", {"path": raw[:300]})
    if request.method not in READ_METHODS:
        raise Unsupported(request.method, raw)
    if (nonce := nonce_of(tags["name"] if tags is not None else m["name"] if m else "")) is not None:
        return await canary(request, services, nonce, m["kind"].rstrip("s") if m else "tags", m["ref"] if m else "")
    if tags is not None:
        r = _route(request, tags["name"])
        kind, reference = "tags", ""
        _check_policy(request, r, None)
    else:
        assert m is not None
        r = _route(request, m["name"])
        kind, reference = m["kind"].rstrip("s"), m["ref"]
        if kind != "manifest":
            reference = check_digest(reference)
        _check_policy(request, r, None if kind != "manifest" or is_digest(reference) else reference)
    if r.upstream.auth != "passthrough":
        if kind in ("blob", "manifest") and is_digest(reference):  # stored under another name is no yes
            await (services.blobs if kind == "blob" else services.manifests).confirm(r, reference)
        return await _serve(request, services, r, kind, reference)
    if kind == "manifest" and not (is_digest(reference) or TAG.match(reference)):
        return await _serve(request, services, r, kind, reference)  # answered 404 before any check
    checked_as = "manifest" if kind == "referrer" else kind
    credential = await passthrough.admit(request, services.access, r, checked_as, reference)
    token = CLIENT_CREDENTIAL.set(credential)
    try:
        return await _serve(request, services, r, kind, reference)
    finally:
        CLIENT_CREDENTIAL.reset(token)


async def _serve(request: web.Request, services: Services, r: Route, kind: str, reference: str) -> web.StreamResponse:
    if kind == "tags":
        return await tags_list(request, services, r, r.name)
    if kind == "manifest":
        return await manifest(request, services, r, reference)
    if kind == "blob":
        return await blob(request, services, r, reference)
    return await referrers(request, services, r, reference)


def _route(request: web.Request, name: str) -> Route:
    """Which upstream and repository ``name`` means (``?ns=`` from containerd decides first)."""
    r = route(check_name(name), request.query.get("ns"), request.app[CONFIG])
    record(request).upstream = r.upstream.name
    return r


def _check_policy(request: web.Request, r: Route, tag: str | None) -> None:
    """``[[policy]]``, before the cache and the upstream: a denied name is neither fetched nor served."""
    rules = request.app[CONFIG].policy
    if not rules:
        return
    verdict = judge(rules, r.upstream.name, r.repo, tag)
    if not verdict.allowed:
        record(request).denied = verdict.why
        what = f"{r.upstream.name}/{r.repo}" + (f":{tag}" if tag else "")
        raise Denied(f"{what} is denied by {verdict.why}" if verdict.rule else f"{what} is denied: {verdict.why}",
                     {"rule": verdict.rule, "upstream": r.upstream.name, "repository": r.repo, "tag": tag})  # fmt: skip


def _client(request: web.Request) -> ClientCaps:
    """What the client reads, from every ``Accept`` header and its ``User-Agent``."""
    return classify(request.headers.getall("Accept", []), request.headers.get("User-Agent", ""))


async def manifest(request: web.Request, services: Services, r: Route, reference: str) -> web.StreamResponse:
    client = _client(request)
    answer: ManifestAnswer
    headers: dict[str, str] = {}
    target = services.targets.for_request(
        request.remote or "", request.headers.get("X-Forwarded-For", ""), request.headers.get("User-Agent", ""),
        selector=r.selector, accepts_index=client.accepts_index,
        unresolved=request.headers.get(RESOLVE_HEADER, "").strip().lower() == "none",
        authenticated=bool(record(request).user), node=request.headers.get(NODE_HEADER, ""),
    )  # fmt: skip
    if is_digest(reference):
        answer = await services.manifests.by_digest(r, check_digest(reference), client, target)
    elif TAG.match(reference):
        try:
            answer = await services.manifests.by_tag(r, reference, client, target)
        except NothingRuns as exc:
            observe_missing(services, r, reference, target, exc)
            raise
        observe(services, r, reference, target, answer)
        if answer.outcome == "miss" and answer.media_type in IMAGE_TYPES:
            services.blobs.prefetch(r, answer.data)  # its config and thin layers, asked for next
        headers["X-Platproxy-Target"] = record(request).target = f"{target.platform} ({target.source})"
        request.app[METRICS].targets.labels(target.source).inc()
    else:  # the distribution-spec conformance suite expects 404 here, not 400
        raise ManifestUnknown("the reference is neither a valid tag nor a digest",
                              {"reference": reference[:300], "reason": "invalid reference"})  # fmt: skip
    done = record(request)
    done.cache = answer.outcome
    headers |= {
        "Docker-Content-Digest": answer.digest,
        "ETag": f'"{answer.digest}"',
        "X-Platproxy-Cache": answer.outcome,
    }
    if answer.converted_from is not None:
        done.converted = answer.media_type
        headers["X-Platproxy-Converted-From"] = answer.converted_from
    if answer.resolution is not None:
        done.platform = answer.resolution.platform
        done.rank = answer.resolution.label
        headers["X-Platproxy-Platform"] = answer.resolution.platform
        headers["X-Platproxy-Resolved-From"] = answer.resolution.index_digest
        headers["X-Platproxy-Rank"] = answer.resolution.label
    if request.headers.get("If-None-Match", "").strip('"') == answer.digest:
        return web.Response(status=304, headers=headers)
    return web.Response(body=answer.data, headers={**headers, "Content-Type": answer.media_type})


async def tags_list(request: web.Request, services: Services, r: Route, name: str) -> web.StreamResponse:
    """The upstream's tags (the cached ones when it cannot answer), paginated here with n/last."""
    n_text = request.query.get("n")
    if n_text is not None and not n_text.isdigit():
        raise InvalidPagination("n must be a non-negative integer", {"n": n_text[:50]})
    tags = await services.manifests.tag_names(r)
    last = request.query.get("last", "")
    if last:
        tags = [t for t in tags if t > last]
    headers: dict[str, str] = {}
    if n_text is not None:
        n = int(n_text)
        if 0 < n < len(tags):
            tags = tags[:n]
            query = {"n": str(n), "last": tags[-1], **({"ns": ns} if (ns := request.query.get("ns")) else {})}
            headers["Link"] = f'<{request.raw_path.split("?", 1)[0]}?{urlencode(query)}>; rel="next"'
        elif n == 0:
            tags = []
    return web.json_response({"name": name, "tags": tags}, headers=headers)


async def referrers(request: web.Request, services: Services, r: Route, digest: str) -> web.StreamResponse:
    """Passed through; an upstream without the referrers API gets an empty index, never a 404."""
    data, headers = await services.manifests.referrers(r, digest, request.query.get("artifactType", ""))
    return web.Response(body=data, headers=headers)
