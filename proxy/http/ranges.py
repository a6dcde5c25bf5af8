"""HTTP byte ranges of blobs: the one ``Range`` parser and the one ``Content-Range`` writer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.errors import RangeNotSatisfiable

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int
    """Exclusive."""


def parse_range(header: str | None, size: int | None) -> ByteRange | None:
    """One ``bytes=a-b`` range within ``size``; ``None`` for no (or an ignorable) Range header.

    Raises ``RangeNotSatisfiable`` for a range that starts past the end.
    """
    if not header or size is None:
        return None
    m = _RANGE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None  # multi-range or garbage: RFC 9110 allows ignoring it and sending 200
    if m.group(1):
        start = int(m.group(1))
        end = min(int(m.group(2)) + 1, size) if m.group(2) else size
    else:
        start, end = max(size - int(m.group(2)), 0), size
    if start >= size or start >= end:
        raise RangeNotSatisfiable(size)
    return ByteRange(start, end)


def content_range(wanted: ByteRange, size: int) -> str:
    """The ``Content-Range`` of a 206 answer for ``wanted`` of a blob of ``size`` bytes."""
    return f"bytes {wanted.start}-{wanted.end - 1}/{size}"
