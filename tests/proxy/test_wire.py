"""The fill worker's HTTP (``proxy.wire``): bodies copied whole, in order and hashed, fast
or slow, with or without Content-Length, and stopped cleanly.

The upstream is the fake (tests/fakeupstream.py), a real HTTP server on a loopback port: it is
needed here for what Distribution never does (chunked bodies, a body paced on purpose).
"""

from __future__ import annotations

import hashlib
import os
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from proxy import wire
from tests.fakeupstream import FakeUpstream

DIAL = wire.Dial(ssl.create_default_context, connect_timeout=5.0, read_timeout=10.0)


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream().start()
    try:
        yield upstream
    finally:
        upstream.stop()


class Sink:
    """What a fill does with the pieces: keep them (store), hash them (check), note progress."""

    def __init__(self) -> None:
        self.stored = bytearray()
        self.hash = hashlib.sha256()
        self.totals: list[int] = []
        self.store_threads: set[str] = set()
        self.check_threads: set[str] = set()

    def store(self, piece: memoryview) -> None:
        self.store_threads.add(threading.current_thread().name)
        self.stored += piece

    def check(self, piece: memoryview) -> None:
        self.check_threads.add(threading.current_thread().name)
        self.hash.update(piece)

    def run(self, answer: wire.WireAnswer, stop: threading.Event | None = None) -> int:
        return wire.pump(answer, self.store, self.check, self.totals.append, stop or threading.Event())


def get(fake: FakeUpstream, digest: str) -> wire.WireAnswer:
    return wire.open_request("GET", f"{fake.url}/v2/x/blobs/{digest}", {}, DIAL)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_is_stored_and_hashed_whole_and_in_order(fake: FakeUpstream, chunked: bool) -> None:
    fake.chunked = chunked
    data = os.urandom(5 * 2**20 + 12345)
    digest = fake.add_blob(data)
    answer = get(fake, digest)
    assert answer.status == 200
    assert answer.content_length == (None if chunked else len(data))
    sink = Sink()
    try:
        assert sink.run(answer) == len(data)
    finally:
        answer.release()
    assert bytes(sink.stored) == data
    assert "sha256:" + sink.hash.hexdigest() == digest
    assert sink.totals == sorted(sink.totals) and sink.totals[-1] == len(data)
    assert sink.check_threads == {"fill-check"} and "fill-check" not in sink.store_threads  # two threads


def test_a_slow_body_is_handed_over_as_it_arrives(fake: FakeUpstream) -> None:
    """A worker never sits on bytes it has while the socket is idle: clients of a slow upstream
    see each piece as it comes, not one large piece at the end."""
    fake.chunk_delay = 0.05
    data = os.urandom(8 * 65536)
    answer = get(fake, fake.add_blob(data))
    sink = Sink()
    try:
        sink.run(answer)
    finally:
        answer.release()
    assert bytes(sink.stored) == data
    assert len(sink.totals) >= 6, sink.totals  # 8 chunks 50 ms apart, in a 1 MiB buffer


def test_a_stopped_pump_raises_and_stores_nothing_more(fake: FakeUpstream) -> None:
    fake.chunk_delay = 0.05
    answer = get(fake, fake.add_blob(os.urandom(40 * 65536)))
    sink = Sink()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sink.run(answer, stop)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.3)
    stop.set()
    answer.abort()  # a blocked read returns at once
    worker.join(5)
    assert not worker.is_alive()
    answer.release()
    assert errors and isinstance(errors[0], OSError)
    stored = len(sink.stored)
    time.sleep(0.2)
    assert 0 < stored < 40 * 65536 and len(sink.stored) == stored


def test_a_failing_check_is_raised_without_hanging(fake: FakeUpstream) -> None:
    answer = get(fake, fake.add_blob(os.urandom(6 * 2**20)))

    def check(piece: memoryview) -> None:
        raise ValueError("hash failed")

    try:
        with pytest.raises(ValueError, match="hash failed"):
            wire.pump(answer, lambda piece: None, check, lambda total: None, threading.Event())
    finally:
        answer.release()


def test_the_pieces_of_many_fills_share_one_budget() -> None:
    """A fill alone gets the largest pieces; fills that start while others hold the budget get
    smaller ones, down to a floor: what all hold stays near ``BUDGET`` however many run."""
    assert wire.piece_size(0) == wire.PIECE
    held, sizes = 0, []
    for _ in range(100):
        sizes.append(wire.piece_size(held))
        held += wire.RING * sizes[-1]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == wire.MIN_PIECE
    assert sum(wire.RING * size for size in sizes[:32]) <= wire.BUDGET + 32 * wire.RING * wire.MIN_PIECE
    assert wire.piece_size(10 * wire.BUDGET) == wire.MIN_PIECE


def test_an_error_status_is_answered_without_reading_the_body(fake: FakeUpstream) -> None:
    answer = get(fake, "sha256:" + "0" * 64)
    try:
        assert answer.status == 404
        assert answer.headers["Content-Type"].startswith("application/json")  # the caller decides
    finally:
        answer.release()


def test_an_unreachable_upstream_is_an_os_error() -> None:
    from tests.registry import free_port

    with pytest.raises(OSError):
        wire.open_request("GET", f"http://127.0.0.1:{free_port()}/v2/", {}, DIAL)
