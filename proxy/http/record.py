"""What one request did, for its access-log line and its metrics.

The handlers fill it in as they decide (the cache outcome, the bytes sent so far, the upstream,
the platform chosen, the client let in or refused); ``errors_middleware`` reads it once the
answer is done.  One typed record under one ``web.RequestKey`` rather than loose string keys on
the request: a misspelt field is a type error, not a log key that silently never appears, and
aiohttp 3.14 warns about string keys.

May import: nothing of platproxy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from aiohttp import web


@dataclass
class Record:
    """The request's outcome; empty strings are left out of the log line."""

    cache: str = ""
    """``hit``, ``miss``, ``coalesced``, ``stale``..., with ``, cut`` or ``, client left`` appended."""
    sent: int | None = None
    """Body bytes sent so far, where the handler counts them (a streamed blob); else the response's
    Content-Length counts."""
    user: str = ""
    """The htpasswd user the request was let in as (never the password)."""
    upstream: str = ""
    auth: str = ""
    """A passthrough upstream's verdict on the client (``private``..., ``refused``, ``challenged``)."""
    target: str = ""
    platform: str = ""
    rank: str = ""
    converted: str = ""
    denied: str = ""

    def log_fields(self) -> dict[str, str]:
        """The named fields that say something, for the access-log line."""
        named = (f.name for f in fields(self) if f.name not in ("cache", "sent"))
        return {name: value for name in named if (value := getattr(self, name))}

    def add_cache(self, what: str) -> None:
        """Append to the cache outcome (``hit`` -> ``hit, client left``)."""
        self.cache = f"{self.cache}, {what}" if self.cache else what


RECORD = web.RequestKey("platproxy_record", Record)


def record(request: web.Request) -> Record:
    """The request's record, made on first use."""
    found = request.get(RECORD)
    if found is None:
        found = request[RECORD] = Record()
    return found
