"""Plain-text tables of the ``cache`` commands, one layout for a cache directory and a bucket."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxy.oci.mediatypes import INDEX_TYPES
from proxy.pull.targets import UNRESOLVED
from proxy.sizes import human
from proxy.storage.records import TagRecord


def print_table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def tag_row(record: TagRecord, size: int, complete: bool, now: float) -> dict[str, Any]:
    """One row of ``cache ls`` (``--json`` prints these; ``print_tags`` lays them out)."""
    return {"image": record.image, "resolved_for": "index" if record.host == UNRESOLVED else record.host,
            "platform": record.platform or platform_note(record),
            "label": record.label, "size": size, "complete": complete, "digest": record.digest,
            "index": record.index_digest, "age_s": round(now - record.fetched_at)}  # fmt: skip


def platform_note(record: TagRecord) -> str:
    """What stands for the platform of a record that names none: the index kept unresolved (for
    ``platform.all``, index tools and child proxies), or a tag that is a single manifest."""
    if record.host == UNRESOLVED or record.media_type in INDEX_TYPES:
        return "(the index, unresolved)"
    return "(not a list)"


def print_tags(rows: Sequence[dict[str, Any]]) -> None:
    """``cache ls``'s rows (image, what it resolved for, platform, rank label, size, age, digests)."""
    lines: list[tuple[str, ...]] = [
        ("IMAGE", "RESOLVED FOR", "PLATFORM", "RANK LABEL", "SIZE", "AGE", "DIGEST / INDEX")
    ]
    for row in rows:
        shown = human(row["size"]) + ("" if row["complete"] else " (partial)")
        lines.append((row["image"], row["resolved_for"], row["platform"], row["label"] or "-", shown,
                      f"{row['age_s']}s", row["digest"]))  # fmt: skip
        if row["index"]:
            lines.append(("", "", "", "", "", "", f"from {row['index']}"))
    print_table(lines)
