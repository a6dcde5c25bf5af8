"""Sizes that more than one part of platproxy must agree on, named once.

Whole documents are read into memory only up to a limit (a manifest, an image config, a
referrers index); content of any size is streamed in ``CHUNK`` pieces, so memory stays flat.

May import: nothing of platproxy.
"""

from __future__ import annotations

MiB = 2**20

MAX_MANIFEST_SIZE = 4 * MiB
"""Default of ``[limits] max_manifest_size``: Distribution refuses manifests over 4 MiB too."""
MAX_CONFIG_SIZE = 16 * MiB
"""Largest image config read to learn the platform of an entry that names none."""
MAX_REFERRERS_SIZE = 4 * MiB
"""Largest referrers index passed through."""
MAX_TAGS_SIZE = 16 * 2**20
"""An upstream's tag list (a repository of 100,000 tags is about 3 MiB); more is refused unread."""
CHUNK = 256 * 1024
"""Unit of streaming reads and writes (upstream bodies, staging files, bucket objects)."""


def human(size: int) -> str:
    """``1.5 MiB``: a size for people (tables, log lines); scripts get bytes."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
