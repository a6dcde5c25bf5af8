"""The HTTP side of ``auth = "passthrough"``: challenges, the token relay, the access check.

A client of such an upstream is challenged the way the upstream challenges it, with one
difference: when the upstream's token service (the ``realm``) is on its own domain, as Docker
Hub's, GHCR's and Quay's are, the realm the client is sent to is platproxy's ``/auth/token``,
which relays the request to that service.  Relayed rather than pointed at directly, because:

- a node behind a mirror often reaches only the mirror, not the registry's token service;
- the token's scope must name the upstream's repository, and a client names it its own way
  (``localhost:5000/ghcr.io/o/r``, Docker Hub's names without ``library/``): the relay rewrites
  each scope through the same routing as the pull itself;
- the client's credentials then reach platproxy and, from there, only that upstream's own
  token service: never another host, never a redirect target, never a log line.

A token service on another domain is not relayed: the client is sent there itself (with the
scope rewritten), exactly as it would be without a mirror.  An upstream that asks for basic
credentials gets a basic challenge, and platproxy passes the client's credentials on.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from urllib.parse import parse_qsl, quote

import structlog
from aiohttp import web

from proxy.config import Config, UpstreamConfig
from proxy.errors import CannotAuthorize, InvalidName, NameUnknown, Subject, Unauthorized, UpstreamError, UpstreamFailed
from proxy.http.keys import CONFIG, SERVICES
from proxy.http.record import record
from proxy.oci import jsondoc
from proxy.oci.names import check_name
from proxy.pull.access import Access, CredentialsNeeded
from proxy.pull.route import Route, default_upstream, route, upstream_named
from proxy.registry.client import Upstream
from proxy.registry.credentials import (
    Challenge,
    ClientCredential,
    basic_digest,
    credential_digest,
    token_lifetime,
)

log = structlog.get_logger("platproxy.auth")

TOKEN_PATH = "/auth/token"
MAX_FORM = 16384
"""A token request's form (an identity token is a few KiB); more is refused unread."""
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")
_KEPT = {"account", "client_id", "offline_token", "grant_type", "username", "password", "refresh_token",
         "access_type"}  # fmt: skip
"""Token request parameters passed on (``service`` and ``scope`` are the upstream's own)."""


def origin(request: web.Request, config: Config) -> str:
    """Where the client reached platproxy (a TLS terminator in front may say https)."""
    proto = request.headers.get("X-Forwarded-Proto", "").strip().lower()
    scheme = proto if proto in ("http", "https") else request.scheme
    host = request.host if _HOST.fullmatch(request.host or "") else config.listen
    return f"{scheme}://{host}"


async def challenge_for(request: web.Request, config: Config, up: Upstream, r: Route | None) -> str:
    """The ``WWW-Authenticate`` a client of ``up`` is sent (``r``: the repository it asked for)."""
    theirs = await up.challenge()
    if theirs is not None and theirs.scheme == "bearer":
        if up.auth.same_domain(theirs.realm):
            ns = request.query.get("ns")
            realm = origin(request, config) + TOKEN_PATH + (f"/{quote(ns, safe='')}" if ns else "")
            scope = f"repository:{r.name}:pull" if r else ""
        else:
            realm, scope = theirs.realm, f"repository:{r.repo}:pull" if r else ""
        return Challenge("bearer", {"realm": realm, "service": theirs.service, "scope": scope}).header()
    return Challenge("basic", {"realm": f"{up.name} through platproxy"}).header()


async def admit(request: web.Request, access: Access, r: Route, kind: str, reference: str) -> ClientCredential | None:
    """Let a request for a passthrough upstream in; returns the credential to pull it with."""
    credential = access.credential_of(request.headers.get("Authorization", ""))
    try:
        admission = await access.admit(r, kind, reference, credential)
    except CredentialsNeeded as exc:
        record(request).auth = "refused" if credential else "challenged"
        up = access.upstreams[r.upstream.name]
        raise Unauthorized(await challenge_for(request, request.app[CONFIG], up, r), exc.message, exc.detail) from None
    except CannotAuthorize:
        record(request).auth = "unchecked, upstream unreachable"
        raise
    record(request).auth = admission.outcome
    return admission.credential


async def ping(request: web.Request, access: Access, up: Upstream) -> None:
    """``/v2/`` for a passthrough upstream: a challenge without credentials; with them, the
    upstream's verdict on them (``docker login`` to the mirror means something), unless it
    cannot be reached."""
    config: Config = request.app[CONFIG]
    credential = access.credential_of(request.headers.get("Authorization", ""))
    if credential is None:
        if request.headers.get("Authorization"):
            return  # a token the relay fetched anonymously: as good as the upstream's own /v2/ answer
        raise Unauthorized(await challenge_for(request, config, up, None))
    if await access.ask(up, "", "base", "", credential) in (401, 403):
        record(request).auth = "refused"
        raise Unauthorized(
            await challenge_for(request, config, up, None), f"upstream {up.name} refused these credentials"
        )


def ping_upstream(config: Config, ns: str | None) -> UpstreamConfig:
    """The upstream a ``/v2/`` request speaks to: the one ``?ns=`` names, else the default."""
    return (upstream_named(config, ns) if ns else None) or default_upstream(config)


def map_scopes(scopes: list[str], ns: str | None, config: Config) -> tuple[UpstreamConfig, list[str]]:
    """The upstream a token request is for, and its scopes in the upstream's names (pull only:
    platproxy is read-only).  Scopes of several upstreams in one request are refused."""
    upstream: UpstreamConfig | None = None
    mapped: list[str] = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name = rest.rpartition(":")[0]
        if kind != "repository" or not name:
            continue
        r = route(check_name(name), ns, config)
        if upstream is not None and r.upstream.name != upstream.name:
            raise InvalidName("one token request names repositories of two upstreams", {"scope": scopes[:10]})
        upstream = r.upstream
        mapped.append(f"repository:{r.repo}:pull")
    if upstream is None:
        upstream = ping_upstream(config, ns)
    return upstream, mapped


async def token_relay(request: web.Request) -> web.StreamResponse:
    """``GET``/``POST /auth/token[/<ns>]``: the client's token request, relayed (see above)."""
    config: Config = request.app[CONFIG]
    if request.method == "POST":
        try:
            body = await asyncio.wait_for(request.content.read(MAX_FORM + 1), config.limits.header_timeout)
        except TimeoutError:
            raise InvalidName("the token request's form did not arrive in time") from None
        if len(body) > MAX_FORM:
            raise InvalidName(f"a token request's form is at most {MAX_FORM} bytes")
        pairs = parse_qsl(body.decode(errors="replace"))
    elif request.method == "GET":
        pairs = list(request.query.items())
    else:
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    ns = request.match_info.get("ns") or None
    scopes = [s for k, v in pairs if k == "scope" for s in v.split()]
    upstream, mapped = map_scopes(scopes, ns, config)
    if upstream.auth != "passthrough":
        raise NameUnknown(f"upstream {upstream.name} does not take clients' credentials (auth = \"config\")",
                          {"upstream": upstream.name})  # fmt: skip
    access: Access = request.app[SERVICES].access
    up = access.upstreams[upstream.name]
    forwarded = [(k, v) for k, v in pairs if k in _KEPT] + [("scope", s) for s in mapped]
    authorization = request.headers.get("Authorization", "")
    owner = _login(authorization, dict(pairs))
    try:
        status, data, content_type = await up.relay_token(request.method, forwarded, authorization)
    except UpstreamError as exc:
        if not exc.unreachable:
            raise UpstreamFailed(exc, Subject.REPOSITORY, f"token service of {up.name}") from None
        status, data, content_type = 503, b"", ""
    if status >= 500:
        return _offline_token(access, upstream, owner)
    if status == 200:
        _note_tokens(access, data, owner)
    return web.Response(status=status, body=data, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


def _login(authorization: str, form: dict[str, str]) -> str | None:
    """Whose token request this is (a credential digest), ``None`` for an anonymous one."""
    if form.get("grant_type") == "password" and form.get("username"):
        return basic_digest(form["username"], form.get("password", ""))
    if form.get("grant_type") == "refresh_token" and form.get("refresh_token"):
        return credential_digest("Refresh " + form["refresh_token"])
    return credential_digest(authorization) if authorization.strip() else None


def _note_tokens(access: Access, data: bytes, owner: str | None) -> None:
    try:
        answer = jsondoc.loads(data)
    except ValueError:
        return
    if not isinstance(answer, dict):
        return
    lifetime = token_lifetime(answer)
    for key in ("token", "access_token"):
        if isinstance(answer.get(key), str) and answer[key]:
            access.note_token(answer[key], owner, lifetime)


def _offline_token(access: Access, upstream: UpstreamConfig, owner: str | None) -> web.Response:
    """The token service cannot be reached: a token of platproxy's own, good for exactly what is
    remembered for this login (a repository checked within ``auth_remember``, or public), so
    a client can still pull what it was let in to while the upstream is down.  It names the
    login only by digest, and proves nothing to anyone but this platproxy."""
    token = f"platproxy-offline.{secrets.token_urlsafe(32)}"
    access.note_token(token, owner, upstream.auth_remember)
    log.warning("token service unreachable: handed out an offline token, good for what is remembered",
                upstream=upstream.name, anonymous=owner is None)  # fmt: skip
    body = {"token": token, "access_token": token, "expires_in": int(upstream.auth_remember)}
    return web.Response(body=json.dumps(body).encode(), content_type="application/json",
                        headers={"Cache-Control": "no-store"})  # fmt: skip
