"""What the resolver answers: the entries it takes (``Candidate``), the ones it does not and why
(``Verdict``), the whole outcome (``Decision``), and what it needs before it can decide
(``NeedContent``).  Plain frozen data, each with its JSON form for logs, 404 details and the
command line; ``resolve`` builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hostinfo import Platform


@dataclass(frozen=True)
class Candidate:
    """An entry this host can run."""

    digest: str
    media_type: str
    size: int
    platform: Platform
    rank: int
    label: str
    path: tuple[str, ...] = ()
    """Digests of the nested indexes this entry was found under (outermost first)."""
    sort_key: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "digest": self.digest,
            "mediaType": self.media_type,
            "platform": str(self.platform),
            "rank": self.rank,
            "label": self.label,
        }
        if self.path:
            out["via"] = list(self.path)
        return out


@dataclass(frozen=True)
class Verdict:
    """An entry that was not taken, and the sentence saying why."""

    digest: str
    platform: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"digest": self.digest, "platform": self.platform, "reason": self.reason}


@dataclass(frozen=True)
class Decision:
    """The outcome: a chosen entry (or none), the ranking, the rejections, the warnings."""

    chosen: Candidate | None
    candidates: list[Candidate]
    rejected: list[Verdict]
    warnings: list[str]
    host: str
    runs: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.to_json() if self.chosen else None,
            "candidates": [c.to_json() for c in self.candidates],
            "rejected": [r.to_json() for r in self.rejected],
            "warnings": self.warnings,
            "host": self.host,
            "runs": self.runs,
        }

    def no_match_detail(self) -> dict[str, Any]:
        """What a 404 says when nothing fits: the host's vector and every entry's verdict."""
        return {"host": self.host, "runs": self.runs, "entries": [r.to_json() for r in self.rejected]}


@dataclass(frozen=True)
class NeedContent:
    """``resolve`` needs these documents (by digest) before it can decide."""

    digests: tuple[str, ...]
    blobs: frozenset[str] = frozenset()
    """Those of ``digests`` that are blobs (config blobs); the others are manifests or indexes."""
