"""Is a cached tag still fresh, and what to do with the upstream's answer when it is not.

Pure functions of times and answers, so every branch is a table test:
- younger than the TTL: serve it, the upstream is not asked;
- older: ask with a HEAD (cheap, and not counted by Docker Hub's pull limit); the same digest
  keeps the record (revalidated), another digest means the tag moved (refetch);
- the upstream unreachable, failing or rate-limiting: serve the cached answer (stale);
- the upstream says 404: by policy, serve stale (default) or report the tag gone;
- the same two rules when the GET that should replace a moved record fails.
"""

from __future__ import annotations

from enum import Enum

from proxy.errors import UpstreamError
from proxy.registry.client import ManifestHead
from proxy.storage.records import TagRecord


class Freshness(Enum):
    MISS = "miss"
    FRESH = "fresh"
    STALE = "stale"
    """Older than the TTL: to be revalidated."""


class Action(Enum):
    KEEP = "revalidated"
    REFETCH = "refetch"
    SERVE_STALE = "stale"
    GONE = "gone"


def freshness(record: TagRecord | None, now: float, ttl: float) -> Freshness:
    if record is None:
        return Freshness.MISS
    return Freshness.FRESH if now - record.checked_at < ttl else Freshness.STALE


def after_revalidation(
    record: TagRecord, answer: ManifestHead | UpstreamError | None, serve_stale_on_not_found: bool
) -> Action:
    """``answer``: the HEAD's result, ``None`` when it gave no digest, or the error it raised."""
    if isinstance(answer, UpstreamError):
        return after_upstream_error(answer, serve_stale_on_not_found)
    if answer is None:
        return Action.REFETCH  # an upstream that omits the digest on HEAD: fall back to a GET
    return Action.KEEP if answer.digest == record.upstream_digest else Action.REFETCH


def after_upstream_error(error: UpstreamError, serve_stale_on_not_found: bool) -> Action:
    """The upstream failed a HEAD or a GET of a cached tag: serve the cached answer, unless the
    upstream says the tag is gone and the policy believes it."""
    if error.status == 404 and not serve_stale_on_not_found:
        return Action.GONE
    return Action.SERVE_STALE
