"""What one upstream is sent as ``Authorization``, and how its 401 challenges are answered.

Anonymous or credentialed.  A ``Bearer`` challenge fetches a token from the announced realm
(cached per scope until it expires) and the request is retried once; a ``Basic`` challenge is
retried with the configured credentials.  Credentials go only to the upstream's own host and to
a token realm on the same registrable domain (the fix for GHSA-3p65-76g6-3w7r): a foreign realm
is asked anonymously.  With ``auth = "passthrough"`` the credentials are the requesting
client's (``CLIENT_CREDENTIAL``): its bearer token is forwarded as it is, its basic credentials
are exchanged for a token the same way, and its tokens are cached under its credential's digest,
never shared with another client.

Why a module of its own: these are the decisions that keep credentials where they belong, and
they need no HTTP: the one request they make (the token) is the caller's ``TokenFetch``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from proxy.config import is_loopback
from proxy.registry.credentials import CLIENT_CREDENTIAL, Challenge, ClientCredential, TokenCache, token_lifetime

TokenFetch = Callable[[str, dict[str, str]], Awaitable[Any]]
"""GETs a token realm's URL with these headers, redirects not followed: the JSON body of a 200,
``None`` for any other answer or when the realm cannot be reached."""


def basic_header(username: str, password: str) -> str:
    """``Authorization: Basic`` for these credentials (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def registrable_domain(host: str) -> str:
    """The last two labels of a DNS name (``auth.docker.io`` -> ``docker.io``); IPs as they are."""
    if is_loopback(host) or re.fullmatch(r"[\d.]+|\[?[0-9a-fA-F:]+\]?", host):
        return host
    labels = host.lower().rstrip(".").split(".")
    return ".".join(labels[-2:])


class Authorizer:
    """The credentials of one upstream (configured, or each client's own) and its tokens."""

    def __init__(self, host: str, username: str, password: str, passthrough: bool) -> None:
        self.host = host
        self.passthrough = passthrough
        self._tokens = TokenCache()
        self._basic = basic_header(username, password) if username else None
        self._basic_challenged = False

    def client(self) -> ClientCredential | None:
        """The requesting client's credential, when this upstream takes each client's own."""
        return CLIENT_CREDENTIAL.get() if self.passthrough else None

    def same_domain(self, url: str) -> bool:
        """Is ``url`` on this upstream's registrable domain (where its credentials may go)."""
        return registrable_domain(urlsplit(url).hostname or "") == registrable_domain(self.host)

    def header(self, scope: str) -> str | None:
        """The ``Authorization`` for a request of ``scope`` to the upstream's own host, if any."""
        client = self.client()
        if client is not None and not client.is_basic:
            return client.header  # the client's own token, fetched for this upstream
        token = self._tokens.get(client.digest if client else "", scope)
        if token:
            return f"Bearer {token}"
        basic = client.header if client is not None else self._basic
        return basic if basic and self._basic_challenged else None

    async def answer(self, challenge: str, scope: str, fetch: TokenFetch) -> bool:
        """Answer a 401's ``WWW-Authenticate``; True when a retry may now succeed."""
        client = self.client()
        if client is not None and not client.is_basic:
            return False  # a client's token is its own to renew: the client is told, not helped
        basic = client.header if client is not None else self._basic
        parsed = Challenge.parse(challenge)
        if parsed is not None and parsed.scheme == "basic":
            if basic is None or self._basic_challenged:
                return False
            self._basic_challenged = True
            return True
        if parsed is None or parsed.scheme != "bearer" or urlsplit(parsed.realm).scheme not in ("http", "https"):
            return False
        query = {"service": parsed.service}
        if scope:
            query["scope"] = scope
        headers = {"Authorization": basic} if basic and self.same_domain(parsed.realm) else {}
        body = await fetch(f"{parsed.realm}?{urlencode(query)}", headers)
        if not isinstance(body, dict):
            return False
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            return False
        self._tokens.put(client.digest if client else "", scope, token, token_lifetime(body))
        return True
