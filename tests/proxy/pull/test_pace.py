"""What a blob fill may take from its upstream (pure, with a hand-driven clock)."""

from __future__ import annotations

import pytest

from proxy.errors import UpstreamError
from proxy.pull.pace import Pace


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_body_stops_at_the_limit_and_a_declared_length_over_it_is_refused() -> None:
    pace = Pace("up", limit=1000, min_rate=0, window=5.0)
    pace.take(600)
    pace.take(400)  # exactly the size: fine
    with pytest.raises(UpstreamError, match="longer than 1000"):
        pace.take(1)
    with pytest.raises(UpstreamError, match="declared 1001"):
        Pace("up", 1000, 0, 5.0).headers(1001)
    Pace("up", 1000, 0, 5.0).headers(None)  # unknown: counted as it comes


def test_a_trickle_is_cut_after_a_whole_window_and_a_steady_body_is_not() -> None:
    clock = Clock()
    steady = Pace("up", limit=10**9, min_rate=1000, window=5.0, clock=clock)
    slow = Pace("up", limit=10**9, min_rate=1000, window=5.0, clock=clock)
    clock.now += 4.0
    steady.take(5000)
    slow.take(1)  # within the first window: not judged yet
    clock.now += 4.0
    steady.take(5000)  # 10,000 bytes over 8 s: 1250 B/s, a new window starts
    with pytest.raises(UpstreamError, match="under min_fill_rate"):
        slow.take(1)  # 2 bytes over 8 s
    clock.now += 6.0
    steady.take(6000)


def test_no_floor_when_min_rate_is_zero() -> None:
    clock = Clock()
    pace = Pace("up", limit=10**9, min_rate=0, window=1.0, clock=clock)
    clock.now += 3600
    pace.take(1)
