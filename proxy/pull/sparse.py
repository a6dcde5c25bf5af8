"""Indexes whose children are partly absent: an imported bundle keeps only the platforms its
site runs, and an upstream may hold such an index too.  A target resolves among the children
present, in the resolver's order: when its best entry is absent (the upstream says it does not
have it, or cannot be reached and this cache does not hold it) the next present entry that runs
there is served, and the rank label says so; when none is present, the 404 names the entries
left out and the platforms that are there.  The answer is never kept as the tag's record, so a
child that comes back (a new bundle, the upstream again) is served at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from proxy.errors import ManifestUnknown, NothingRuns, UpstreamFailed
from proxy.oci.decision import Candidate, Decision

ABSENT = "best entry absent"


@dataclass(frozen=True)
class Present:
    chosen: Candidate
    absent: list[Candidate]
    """Better-ranked entries that are not here (empty: the best one was)."""

    @property
    def label(self) -> str:
        return f"{self.chosen.label}; {ABSENT}" if self.absent else self.chosen.label


async def first_present(decision: Decision, load: Callable[[str], Awaitable[bytes]], what: str,
                        index_digest: str, platforms: list[str]) -> Present:  # fmt: skip
    """The best-ranked candidate ``load`` can give (its manifest, from the cache or the upstream);
    ``NothingRuns`` naming what was left out when none can be."""
    absent: list[Candidate] = []
    for candidate in decision.candidates:
        try:
            await load(candidate.digest)
        except (UpstreamFailed, ManifestUnknown) as exc:
            if isinstance(exc, UpstreamFailed) and exc.error.status not in (None, 404) and exc.error.status < 500:
                raise  # refused (401, 403): not an absence
            absent.append(candidate)
            continue
        return Present(candidate, absent)
    left = ", ".join(f"{c.platform} ({c.digest})" for c in absent)
    raise NothingRuns(f"{what}: every entry that runs on {decision.host} is absent here ({left}); the platforms "
                      f"present: {', '.join(platforms) or 'none'}",
                      {"host": decision.host, "absent": [c.to_json() for c in absent], "present": platforms},
                      index_digest)  # fmt: skip
