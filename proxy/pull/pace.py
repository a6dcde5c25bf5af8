"""What one blob fill may take from its upstream: a size and a pace.

A fill is a single-flight copy that every waiting client follows, so an upstream that sends
without end (a chunked body with no ``Content-Length``) or at a trickle (one byte just inside
each ``read_timeout``) would hold every one of them and fill the staging disk.  ``Pace`` is told
each piece as it arrives and raises, where the copy runs, once the body is longer than it
may be (the size the manifest's descriptor gave, else ``[limits] max_blob_size``) or slower than
``min_fill_rate`` over a whole window of ``read_timeout`` seconds.  The raise stops the copy;
the fill fails and its clients are cut, as for a digest mismatch.  Pure but for the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from proxy.errors import UpstreamError


class Pace:
    def __init__(self, upstream: str, limit: int, min_rate: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.upstream = upstream
        self.limit = limit
        self.min_rate = min_rate
        self.window = window
        self.clock = clock
        self.total = 0
        self._since = clock()
        self._in_window = 0

    def headers(self, content_length: int | None) -> None:
        """A declared length over the limit is refused before any byte is read."""
        if content_length is not None and content_length > self.limit:
            raise UpstreamError(self.upstream, 502, f"blob declared {content_length} bytes, more than {self.limit}")

    def take(self, count: int) -> None:
        self.total += count
        if self.total > self.limit:
            raise UpstreamError(self.upstream, 502, f"blob body longer than {self.limit} bytes: cut")
        if not self.min_rate:
            return
        self._in_window += count
        now = self.clock()
        elapsed = now - self._since
        if elapsed < self.window:
            return
        if self._in_window < self.min_rate * elapsed:
            raise UpstreamError(self.upstream, 504, f"blob arrived at {self._in_window / elapsed:.0f} B/s over "
                                f"{elapsed:.0f}s, under min_fill_rate {self.min_rate} B/s: cut")  # fmt: skip
        self._since, self._in_window = now, 0

    def sink(self, write: Callable[[memoryview], None]) -> Callable[[memoryview], None]:
        """``write``, counted first."""

        def counted(piece: memoryview) -> None:
            self.take(len(piece))
            write(piece)

        return counted
