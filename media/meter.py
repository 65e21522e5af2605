"""Engine-wide byte counters and the bitrates derived from them."""

from __future__ import annotations

import time

WINDOW_S = 1.0
"""Rates are measured over at least this long, however often they are read."""


class Meter:
    """Counts bytes in and out as they flow; ``sample`` turns them into kbit/s.

    Counters only ever grow (sessions that end keep their share), so a rate is a
    plain difference between two samples. Heartbeats, scrapes and admission
    checks all read the rates; a read less than ``WINDOW_S`` after the last
    measurement keeps it, so a burst of reads cannot shrink the window to a few
    milliseconds of noise.
    """

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0
        self.kbps_in = 0.0
        self.kbps_out = 0.0
        self._at = time.monotonic()
        self._in = 0
        self._out = 0

    def sample(self) -> None:
        now = time.monotonic()
        elapsed = now - self._at
        if elapsed < WINDOW_S:
            return
        self.kbps_in = (self.bytes_in - self._in) * 8 / 1000 / elapsed
        self.kbps_out = (self.bytes_out - self._out) * 8 / 1000 / elapsed
        self._at, self._in, self._out = now, self.bytes_in, self.bytes_out
