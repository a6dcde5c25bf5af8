"""Fill leases in a shared bucket: which replica fetches a cold blob from the upstream.

A lease is a small object ``<prefix>leases/<digest>`` holding its owner and expiry.  It is
created with ``PUT If-None-Match: *`` (exactly one replica wins), renewed and taken over with
``PUT If-Match: <etag>`` (a compare-and-swap: of several replicas that find the same expired
lease, one wins), and deleted when the blob is in the bucket.  Expiry is what bounds a dead
owner: after ``lease_ttl`` without renewal any replica may take the fill over.  Expiry times
are wall-clock times written by the owner, so replicas' clocks must agree to well within
``lease_ttl`` (NTP does that).

The decisions (is this lease still held?) are pure functions; ``proxy.storage.s3.store`` does the I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum


class LeaseOutcome(StrEnum):
    """What a replica that wanted to fill a blob got (the ``platproxy_lease_total`` labels)."""

    ACQUIRED = "acquired"
    """No lease existed: this replica fetches from the upstream."""
    TAKEN_OVER = "taken_over"
    """The owner's lease had expired (it died or stalled): this replica fetches now."""
    HELD = "held"
    """Another replica is fetching: wait for its blob."""
    LOST = "lost"
    """A renewal failed because another replica took the lease over."""


@dataclass(frozen=True)
class LeaseBody:
    owner: str
    expires: float


def lease_body(owner: str, now: float, ttl: float) -> bytes:
    return json.dumps({"owner": owner, "expires": now + ttl}).encode()


def parse_lease(data: bytes) -> LeaseBody | None:
    """``None`` for anything that is not a lease we wrote (treated as expired: it holds nothing)."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    owner, expires = doc.get("owner"), doc.get("expires")
    if not isinstance(owner, str) or not isinstance(expires, int | float) or isinstance(expires, bool):
        return None
    return LeaseBody(owner, float(expires))


def still_held(lease: LeaseBody | None, now: float) -> bool:
    """Does the lease keep other replicas away right now?"""
    return lease is not None and lease.expires > now


def next_poll(previous: float, base: float) -> float:
    """Back off while waiting on another replica's fill: base, 2x, 4x, up to 8x ``base``."""
    return min(max(previous * 2, base), base * 8)
