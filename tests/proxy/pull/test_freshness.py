"""When a cached tag is fresh, revalidated, served stale or gone (pure)."""

from __future__ import annotations

import pytest

from proxy.errors import UpstreamError
from proxy.pull.freshness import Action, Freshness, after_revalidation, freshness
from proxy.registry.client import ManifestHead
from proxy.storage.records import TagRecord

SHA = "sha256:" + "a" * 64


def record(checked_at: float, upstream_digest: str = SHA) -> TagRecord:
    return TagRecord("u", "r", "t", "h", SHA, "m", upstream_digest, None, "", "", "", 0.0, checked_at)


def test_freshness() -> None:
    assert freshness(None, 100, 60) is Freshness.MISS
    assert freshness(record(50), 100, 60) is Freshness.FRESH
    assert freshness(record(40), 100, 60) is Freshness.STALE
    assert freshness(record(100), 100, 0) is Freshness.STALE


@pytest.mark.parametrize(
    ("answer", "stale_on_404", "action"),
    [
        (ManifestHead(SHA, "m", 1), True, Action.KEEP),
        (ManifestHead("sha256:" + "b" * 64, "m", 1), True, Action.REFETCH),
        (None, True, Action.REFETCH),
        (UpstreamError("u", None, "down"), True, Action.SERVE_STALE),
        (UpstreamError("u", 503, "x"), True, Action.SERVE_STALE),
        (UpstreamError("u", 429, "x", "5"), True, Action.SERVE_STALE),
        (UpstreamError("u", 404, "x"), True, Action.SERVE_STALE),
        (UpstreamError("u", 404, "x"), False, Action.GONE),
    ],
)
def test_after_revalidation(answer: ManifestHead | UpstreamError | None, stale_on_404: bool, action: Action) -> None:
    assert after_revalidation(record(0), answer, stale_on_404) is action
