"""Range headers: what is served, and what is a 416 (pure)."""

from __future__ import annotations

import pytest

from proxy.errors import PlatproxyError
from proxy.http.errors import answer_for
from proxy.http.ranges import ByteRange, parse_range

SHA = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [(None, 100, None), ("bytes=0-9", 100, ByteRange(0, 10)), ("bytes=90-", 100, ByteRange(90, 100)),
     ("bytes=-10", 100, ByteRange(90, 100)), ("bytes=50-500", 100, ByteRange(50, 100)),
     ("bytes=0-1,5-6", 100, None), ("items=0-1", 100, None), ("bytes=0-9", None, None)],
)  # fmt: skip
def test_ranges(header: str | None, size: int | None, expected: ByteRange | None) -> None:
    assert parse_range(header, size) == expected


def test_unsatisfiable_range() -> None:
    with pytest.raises(PlatproxyError) as info:
        parse_range("bytes=100-", 100)
    assert answer_for(info.value).status == 416
