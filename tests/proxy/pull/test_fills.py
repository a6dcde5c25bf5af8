"""The single-flight reader rules, on a fill driven by hand."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from proxy.errors import DigestMismatch
from proxy.pull.fills import FillFailed, ready_ranges
from proxy.storage.files import FileStore
from proxy.storage.staging import Fill

DIGEST = "sha256:" + "0" * 64


async def collect(fill: Fill, start: int, end: int | None, into: list[tuple[int, int]]) -> None:
    async for span in ready_ranges(fill, start, end):
        into.append(span)


async def test_the_last_byte_waits_for_verification(tmp_path: Path) -> None:
    fill = Fill(DIGEST, FileStore(tmp_path).writer(DIGEST))
    fill.size = 10
    got: list[tuple[int, int]] = []
    reader = asyncio.create_task(collect(fill, 0, 10, got))
    fill.advance(10)  # every byte has arrived, the digest is not checked yet
    await asyncio.sleep(0.05)
    assert got == [(0, 9)] and not reader.done()
    fill.finish(None)
    await asyncio.wait_for(reader, 1)
    assert got == [(0, 9), (9, 1)]


async def test_a_failed_verification_never_releases_the_last_byte(tmp_path: Path) -> None:
    fill = Fill(DIGEST, FileStore(tmp_path).writer(DIGEST))
    got: list[tuple[int, int]] = []
    reader = asyncio.create_task(collect(fill, 0, 10, got))
    fill.advance(10)
    await asyncio.sleep(0.05)
    fill.finish(DigestMismatch("wrong bytes"))
    with pytest.raises(FillFailed):
        await asyncio.wait_for(reader, 1)
    assert sum(n for _, n in got) == 9


async def test_ranges_follow_the_fill_and_a_late_joiner_starts_from_zero(tmp_path: Path) -> None:
    fill = Fill(DIGEST, FileStore(tmp_path).writer(DIGEST))
    first: list[tuple[int, int]] = []
    early = asyncio.create_task(collect(fill, 0, None, first))
    fill.advance(4)
    await asyncio.sleep(0.01)
    late: list[tuple[int, int]] = []
    joiner = asyncio.create_task(collect(fill, 2, None, late))
    fill.advance(4)
    await asyncio.sleep(0.01)
    fill.finish(None)
    await asyncio.wait_for(asyncio.gather(early, joiner), 1)
    assert sum(n for _, n in first) == 8 and first[0] == (0, 4)
    assert sum(n for _, n in late) == 6 and late[0][0] == 2


async def test_verification_releases_the_last_byte_before_the_file_is_synced(tmp_path: Path) -> None:
    fill = Fill(DIGEST, FileStore(tmp_path).writer(DIGEST))
    got: list[tuple[int, int]] = []
    reader = asyncio.create_task(collect(fill, 0, 10, got))
    fill.advance(10)
    fill.verified()  # digest checked; fsync and rename still to come
    await asyncio.wait_for(reader, 1)
    assert sum(n for _, n in got) == 10 and not fill.finished
