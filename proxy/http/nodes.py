"""The mirror's side of node onboarding: registrations and the node check.

- ``/_platproxy/nodes``: ``POST {"platform": "linux/arm/v7", "runtime": "docker"}`` registers
  (or renews) the requesting node's own address; ``GET`` shows it, ``DELETE`` removes it.  An
  address in the body is refused: a node registers only itself.  Off with ``[resolve]
  node_registration = false`` (403).
- ``/_platproxy/checks``: ``POST`` opens a check and returns its one-time nonce;
  ``GET /_platproxy/checks/<nonce>`` returns what the mirror saw for it, once, to the address
  that opened it, to this host (``[resolve] host_addresses``), or to an authenticated user
  (anyone else: 403).
- The canary pulls themselves (``…/platproxy-check/<nonce>``) come through the registry API and
  are answered here (``canary``), resolved for the client as a real tag is, never cached.

With ``[auth] htpasswd`` these paths need the same credentials as ``/v2/``.
"""

from __future__ import annotations

import sqlite3
import time

import structlog
from aiohttp import web

from proxy.config import check_platform
from proxy.errors import (
    BlobUnknown,
    Denied,
    InvalidRequest,
    ManifestUnknown,
    NameUnknown,
    PlatproxyError,
    StorageFailed,
)
from proxy.http.errors import answer_for
from proxy.http.keys import CONFIG, METRICS, SERVICES, Services
from proxy.http.record import record
from proxy.oci import jsondoc
from proxy.oci.clients import classify
from proxy.oci.digests import digest_of
from proxy.oci.mediatypes import DOCKER_CONFIG, DOCKER_LIST, DOCKER_MANIFEST
from proxy.oci.names import TAG, is_digest
from proxy.oci.resolve import Decision, resolve
from proxy.pull.canary import LAYER_TYPE, Sighting
from proxy.pull.targets import NODE_HEADER, REFUSED

log = structlog.get_logger("platproxy.nodes")

NODES_PATH = "/_platproxy/nodes"
CHECKS_PATH = "/_platproxy/checks"
RUNTIMES = ("containerd", "docker", "podman", "cri-o", "k3s", "other")


def add_routes(app: web.Application) -> None:
    app.router.add_route("*", NODES_PATH, registration)
    app.router.add_post(CHECKS_PATH, open_check)
    app.router.add_get(CHECKS_PATH + "/{nonce}", read_check)


def _address(request: web.Request, services: Services) -> str:
    return services.targets.address_of(request.remote or "", request.headers.get("X-Forwarded-For", ""))


async def registration(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    address = _address(request, services)
    if request.method == "GET":
        found = services.registrations.get(address)
        if found is None:
            raise NameUnknown(f"no registration for {address}", {"address": address})
        return web.json_response(vars(found))
    if request.method == "DELETE":
        removed = await services.registrations.remove(address)
        if removed is None:
            raise NameUnknown(f"no registration for {address}", {"address": address})
        return web.json_response(vars(removed))
    if request.method != "POST":
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST", "DELETE"])
    if not request.app[CONFIG].resolve.node_registration:
        raise Denied("this mirror takes no node registrations ([resolve] node_registration = false): "
                     "declare the platform in the node header or ask for a [[clients]] rule")  # fmt: skip
    try:
        body = jsondoc.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the registration is not JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("platform"), str):
        raise InvalidRequest('a registration is {"platform": "linux/arm/v7", "runtime": "docker"}')
    if "address" in body:
        raise InvalidRequest('a node registers only its own address: leave out "address"', {"address": address})
    runtime = body.get("runtime", "other")
    if runtime not in RUNTIMES:
        raise InvalidRequest(f"unknown runtime {str(runtime)[:40]!r}", {"runtimes": list(RUNTIMES)})
    try:
        platform = str(check_platform(body["platform"].strip()))
    except ValueError as exc:
        log.warning("registration refused", address=address, platform=body["platform"][:100], error=str(exc))
        raise InvalidRequest(f"platform: {exc}", {"platform": body["platform"][:100]}) from None
    try:
        kept = await services.registrations.register(address, platform, runtime)
    except sqlite3.Error as exc:
        raise StorageFailed("the node registration", exc) from None
    return web.json_response(vars(kept))


def _privileged(request: web.Request, services: Services) -> bool:
    """This host (``[resolve] host_addresses``: by default loopback and its own addresses), or a
    user htpasswd let in."""
    return bool(record(request).user) or services.targets.is_host(request.remote or "")


async def open_check(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    check = services.checks.issue(_address(request, services))
    request.app[METRICS].node_checks.labels("issued").inc()
    return web.json_response({"nonce": check.nonce, "repository": f"platproxy-check/{check.nonce}",
                              "tag": "latest", "expires_in": services.checks.ttl}, status=201)  # fmt: skip


async def read_check(request: web.Request) -> web.Response:
    services: Services = request.app[SERVICES]
    nonce = request.match_info["nonce"]
    check = services.checks.get(nonce)
    if check is None:
        raise NameUnknown("no open check with this nonce (a nonce is read once and expires)", {"nonce": nonce[:64]})
    if check.asker != _address(request, services) and not _privileged(request, services):
        raise Denied("only the address that opened a check reads it")
    services.checks.take(nonce)
    request.app[METRICS].node_checks.labels("read").inc()
    return web.json_response(check.to_json())


async def canary(request: web.Request, services: Services, nonce: str, kind: str, reference: str) -> web.Response:
    """Answer a canary pull from the check's own image; nothing is cached, no upstream is asked."""
    check = services.checks.get(nonce)
    done = record(request)
    done.upstream = "canary"
    request.app[METRICS].node_checks.labels(kind).inc()
    status = 200
    try:
        if check is None:
            missing = BlobUnknown if kind == "blob" else NameUnknown if kind == "tags" else ManifestUnknown
            raise missing("no open node check with this nonce", {"nonce": nonce})
        if kind == "tags":
            return web.json_response({"name": f"platproxy-check/{nonce}", "tags": ["latest"]})
        if kind == "blob":
            data = check.blob(reference)
            if data is None:
                raise BlobUnknown("not part of this canary", {"digest": reference})
            media = DOCKER_CONFIG if data[:1] == b"{" else LAYER_TYPE
            return web.Response(body=data, headers={"Content-Type": media, "Docker-Content-Digest": reference})
        if kind != "manifest" or not (is_digest(reference) or TAG.match(reference)):
            raise ManifestUnknown("the canary has only manifests and blobs", {"reference": reference[:100]})
        client = classify(request.headers.getall("Accept", []), request.headers.get("User-Agent", ""))
        target = services.targets.for_request(
            request.remote or "", request.headers.get("X-Forwarded-For", ""), request.headers.get("User-Agent", ""),
            accepts_index=client.accepts_index, node=request.headers.get(NODE_HEADER, ""))  # fmt: skip
        done.target = f"{target.platform} ({target.source})"
        image = check.image(target.platform if target.resolves else "")
        if is_digest(reference):
            data = check.manifest(reference)
            if data is None:
                raise ManifestUnknown("not part of this canary", {"digest": reference})
            media = DOCKER_LIST if data == image.index else DOCKER_MANIFEST
        elif target.key == REFUSED:
            raise ManifestUnknown("a remote client nothing places, which cannot read an index "
                                  "([resolve] unknown_list_blind = \"refuse\")")  # fmt: skip
        elif not target.resolves or (
            client.accepts_index and request.app[CONFIG].resolve.list_aware_clients == "index"
        ):
            data, media = image.index, DOCKER_LIST
        else:
            decision = resolve(image.index, target.profile, client)
            assert isinstance(decision, Decision)
            if decision.chosen is None:
                raise ManifestUnknown("no entry of the canary runs on this platform", decision.no_match_detail())
            done.platform = str(decision.chosen.platform)
            data, media = image.manifests[decision.chosen.digest], DOCKER_MANIFEST
        return web.Response(body=data, headers={"Content-Type": media, "Docker-Content-Digest": reference if
                                                is_digest(reference) else digest_of(data),
                                                "X-Platproxy-Target": done.target})  # fmt: skip
    except PlatproxyError as exc:  # a refusal is part of what was seen (a bad node header: 400)
        status = answer_for(exc).status
        raise
    finally:
        if check is not None:
            services.checks.seen(check, Sighting(
                time.time(), _address(request, services), request.headers.get("User-Agent", "")[:200],
                request.headers.get(NODE_HEADER, "")[:100], done.target, kind, reference[:100], status))  # fmt: skip
