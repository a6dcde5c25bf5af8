"""The fleet report, pure: records -> an image x platform matrix with a summary per platform.

A cell is what that platform got for that image the last time it pulled (the outcome of the
most recent record), with every outcome's count beside it.  Filters: a glob on the image
(``docker.io/library/*``), platforms, outcomes, and an age (only pulls seen since).  What-if
columns (``proxy.fleet.whatif``) are added as extra platforms marked ``what_if``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from proxy.fleet.outcomes import DEGRADED, MISSING, NATIVE
from proxy.storage.records import FleetRecord


@dataclass(frozen=True)
class Cell:
    outcome: str
    detail: str = ""
    count: int = 0
    last_seen: float = 0.0
    first_seen: float = 0.0
    source: str = ""
    chosen: str = ""
    chosen_platform: str = ""
    reason: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    what_if: bool = False

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v not in ("", 0, 0.0, {}, False) or k == "outcome"}


@dataclass
class Report:
    images: dict[str, dict[str, Cell]]
    """image -> platform -> cell."""
    indexes: dict[str, str]
    """image -> the index digest it was last resolved from."""
    platforms: list[str]
    what_if: list[str]
    generated: float

    def summary(self) -> dict[str, dict[str, int]]:
        """Per platform: how many images are native, degraded, missing there (and, for a what-if
        column, unknown: the index is not cached)."""
        out: dict[str, dict[str, int]] = {}
        for cells in self.images.values():
            for platform, cell in cells.items():
                row = out.setdefault(platform, {NATIVE: 0, "degraded": 0, MISSING: 0, "unknown": 0})
                row[cell.outcome if cell.outcome in (NATIVE, MISSING, "unknown") else "degraded"] += 1
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        images = [
            {"image": image, "index": self.indexes.get(image, ""),
             "cells": {p: c.to_json() for p, c in sorted(cells.items())}}
            for image, cells in sorted(self.images.items())
        ]  # fmt: skip
        return {"generated": self.generated, "platforms": self.platforms, "what_if": self.what_if,
                "summary": self.summary(), "images": images}  # fmt: skip

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per (image, platform), for CSV and tables."""
        pairs = [(image, platform, cell) for image, cells in sorted(self.images.items())
                 for platform, cell in sorted(cells.items())]  # fmt: skip
        return [{"image": image, "platform": platform, "outcome": cell.outcome, "detail": cell.detail,
                 "count": cell.count, "last_seen": cell.last_seen, "source": cell.source,
                 "chosen_platform": cell.chosen_platform, "what_if": cell.what_if}
                for image, platform, cell in pairs]  # fmt: skip

    def offending(self, fail_on: str) -> list[tuple[str, str, Cell]]:
        """(image, platform, cell) that fail a ``--fail-on missing|degraded`` gate."""
        bad = {MISSING} if fail_on == MISSING else {MISSING, *DEGRADED}
        return [(i, p, c) for i, cells in sorted(self.images.items()) for p, c in sorted(cells.items())
                if c.outcome in bad]  # fmt: skip


def build(records: list[FleetRecord], *, images: str = "*", platforms: tuple[str, ...] = (),
          outcomes: tuple[str, ...] = (), since: float = 0.0, now: float = 0.0) -> Report:  # fmt: skip
    """The report over ``records`` (merged: one per image, platform, outcome), filtered."""
    grouped: dict[tuple[str, str], list[FleetRecord]] = {}
    for r in records:
        if r.last_seen < since or not fnmatch.fnmatchcase(r.image, images):
            continue
        if platforms and r.platform not in platforms:
            continue
        grouped.setdefault((r.image, r.platform), []).append(r)
    matrix: dict[str, dict[str, Cell]] = {}
    indexes: dict[str, tuple[float, str]] = {}
    for (image, platform), found in grouped.items():
        latest = max(found, key=lambda r: r.last_seen)
        if outcomes and latest.outcome not in outcomes:
            continue
        matrix.setdefault(image, {})[platform] = Cell(
            latest.outcome, latest.detail, sum(r.count for r in found), latest.last_seen,
            min(r.first_seen for r in found), latest.source, latest.chosen, latest.chosen_platform, latest.reason,
            {r.outcome: r.count for r in found})  # fmt: skip
        if latest.index_digest and indexes.get(image, (0.0, ""))[0] <= latest.last_seen:
            indexes[image] = (latest.last_seen, latest.index_digest)
    seen = sorted({p for cells in matrix.values() for p in cells})
    return Report(matrix, {i: d for i, (_, d) in indexes.items()}, seen, [], now)


def what_if_column(target: str) -> str:
    """A what-if column's name: beside the platform's own column when the fleet runs it too."""
    return f"{target} (what if)"


def add_what_if(report: Report, target: str, cells: dict[str, Cell]) -> None:
    """Add ``target`` as a what-if column: ``cells`` maps image -> its evaluated cell."""
    column = what_if_column(target)
    report.what_if.append(column)
    for image, cell in cells.items():
        if image in report.images:
            report.images[image][column] = cell
