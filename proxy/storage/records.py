"""The records the stores keep about content, as plain data: a tag's record (``TagRecord``: what
a pull of ``name:tag`` is answered with, for which target, resolved from which index, when) and
a stored file's use (``ContentEntry``, for least-recently-used eviction).  The SQLite index
(``tagindex``), the bucket's shared records (``sharedtags``), the pull services and the
``cache`` commands all speak them; none of them needs to know where they are kept.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ContentEntry:
    """One stored file and when it was last used (for least-recently-used eviction)."""

    digest: str
    size: int
    last_used: float


@dataclass(frozen=True)
class TagRecord:
    upstream: str
    repo: str
    tag: str
    host: str
    digest: str
    """What a pull of the tag is answered with (the chosen manifest for a list)."""
    media_type: str
    upstream_digest: str
    """What the upstream's tag pointed at when checked (the index digest for a list)."""
    index_digest: str | None
    platform: str
    label: str
    reason: str
    fetched_at: float
    checked_at: float

    @property
    def image(self) -> str:
        """``<upstream>/<repo>:<tag>``, as the ``cache`` commands name a record."""
        return f"{self.upstream}/{self.repo}:{self.tag}"


@dataclass(frozen=True)
class NodeRecord:
    """A node that registered its platform with the mirror (``platproxy node setup`` for runtimes
    that cannot send the node header): requests from ``address`` resolve for ``platform`` until
    ``expires_at``, unless renewed."""

    address: str
    platform: str
    runtime: str
    registered_at: float
    expires_at: float

    def live(self, now: float) -> bool:
        return now < self.expires_at


@dataclass(frozen=True)
class FleetRecord:
    """What a platform got for an image, counted: one row per (image, platform, outcome), merged
    across requests (``count``, first and last seen) and across replicas."""

    image: str
    """``<upstream>/<repository>:<tag>``."""
    platform: str
    """The target platform the tag was resolved for (``linux/arm/v7``)."""
    outcome: str
    """``native``, ``variant fallback``, ``lower level``, ``32-bit compat``, ``other
    architecture``, ``emulated`` or ``missing`` (``proxy.fleet.outcomes``)."""
    detail: str
    source: str
    """How the target was placed the last time: ``node``, ``registration``, ``rule``, ``user-agent``,
    ``selector``, ``host``, ``guess``."""
    index_digest: str
    chosen: str
    """The digest served (empty when missing)."""
    chosen_platform: str
    reason: str
    """The resolver's sentence: the rank, or why nothing runs."""
    first_seen: float
    last_seen: float
    count: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.image, self.platform, self.outcome)
