"""Credentials in the registry protocol: challenges, tokens, and a client's own credential.

- ``Challenge``: a parsed ``WWW-Authenticate`` (``Bearer realm="…",service="…",scope="…"``) and
  the one way platproxy writes one.
- ``ClientCredential``: the ``Authorization`` header a client sent, for an upstream with
  ``auth = "passthrough"``.  Every key made from it is its digest (memory only); its ``repr``
  never shows it, so a log line or a traceback cannot print it by accident.
- ``CLIENT_CREDENTIAL``: the credential the current request pulls with.  Set in exactly two
  places, each around one await and reset after it (``tests/test_architecture.py`` checks no
  other module sets it): the HTTP edge (``http.handlers.dispatch``), once the access check let a
  passthrough request in, around serving it; and the access check itself
  (``pull.access.Access.ask``), around the one ``HEAD`` it asks with that credential.  Only
  ``registry.auth`` reads it.  A fill or a tag refresh started by the request runs in a task
  that copies the context at its creation (asyncio does), so it fetches with the credentials of
  the client that started it, and no other request can pick them up.
- ``TokenCache``: bearer tokens per (credential digest, scope) until shortly before they expire.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

_PARAM = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))')
MAX_CLIENT_TOKENS = 10_000
"""Client tokens kept at most; expired ones are dropped first, then the oldest."""


@dataclass(frozen=True)
class Challenge:
    scheme: str
    """``bearer`` or ``basic`` (lower-case)."""
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, header: str) -> Challenge | None:
        """The first challenge of a ``WWW-Authenticate`` value; ``None`` when there is none."""
        scheme, _, rest = header.strip().partition(" ")
        if not scheme.isalpha():
            return None
        params = {
            m.group(1).lower(): (m.group(2) or m.group(3) or "").replace('\\"', '"') for m in _PARAM.finditer(rest)
        }
        return cls(scheme.lower(), params)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    def header(self) -> str:
        """As a ``WWW-Authenticate`` value (quotes and backslashes in values are dropped)."""
        parts = ",".join(f'{k}="{_quotable(v)}"' for k, v in self.params.items() if v)
        return f"{self.scheme.capitalize()} {parts}".strip()


def _quotable(value: str) -> str:
    return value.replace("\\", "").replace('"', "")


class ClientCredential:
    """A client's ``Authorization`` header, kept only in memory for as long as its request runs."""

    __slots__ = ("digest", "header", "identity", "scheme")

    def __init__(self, header: str, identity: str = "") -> None:
        self.header = header.strip()
        self.scheme = self.header.partition(" ")[0].lower()
        self.digest = credential_digest(self.header)
        self.identity = identity or self.digest
        """Whose credential this is: a token the relay fetched for a login counts as that login
        (the digest of its basic credentials), so a client's next token is the same client."""

    def __repr__(self) -> str:
        return f"ClientCredential({self.scheme}, sha256:{self.digest[:12]}…)"

    @property
    def is_basic(self) -> bool:
        return self.scheme == "basic"

    @property
    def user(self) -> str:
        """The user name of basic credentials (for messages); empty for a token."""
        if not self.is_basic:
            return ""
        try:
            return base64.b64decode(self.header.partition(" ")[2], validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return ""


CLIENT_CREDENTIAL: ContextVar[ClientCredential | None] = ContextVar("client_credential", default=None)


def token_lifetime(answer: dict[str, object]) -> float:
    """Seconds a token service's answer says its token lasts (``expires_in``; 60 when it says
    nothing usable, the distribution spec's default)."""
    expires = answer.get("expires_in", 60)
    return float(expires) if isinstance(expires, int | float) else 60.0


def credential_digest(header: str) -> str:
    """What every memory of a credential is keyed by: never the credential itself."""
    return hashlib.sha256(header.strip().encode()).hexdigest()


def token_digest(token: str) -> str:
    return credential_digest(f"Bearer {token}")


def basic_digest(user: str, password: str) -> str:
    """The digest of the basic credentials a login is (an OAuth password grant's too)."""
    return credential_digest("Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


class TokenCache:
    """Bearer tokens by (credential digest, scope); ``""`` is platproxy's own identity."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    def get(self, who: str, scope: str) -> str | None:
        entry = self._tokens.get((who, scope))
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def put(self, who: str, scope: str, token: str, lifetime: float) -> None:
        now = time.monotonic()
        if len(self._tokens) >= MAX_CLIENT_TOKENS:
            self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
            while len(self._tokens) >= MAX_CLIENT_TOKENS:
                del self._tokens[next(iter(self._tokens))]
        self._tokens[(who, scope)] = (token, now + max(lifetime - 10, 5))
