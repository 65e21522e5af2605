"""How busy the media plane's event loop is: what admission and shedding go by.

Everything a node does for its streams that is not the native fan-out's worker
threads happens on one event loop: ingest, RTCP, ICE consent, DTLS handshakes of
joining players, signalling, and the fan-out's own share. When that thread has
no time left, frames wait in the ingest socket, reach every player late and
together, and a join storm makes it worse. So the engine samples the loop
thread's CPU time once a second (``time.thread_time``: CPU actually used, so
other processes crowding the machine lower the figure rather than raise it) and:

- refuses new players and downstream nodes (``Overloaded``: 503) while the last
  second's share is at or above ``MediaConfig.busy_limit``;
- past ``SHED_AFTER`` such seconds in a row, ends the newest players, a few at a
  time (``SHED_SHARE`` of them, at least one, per second), until the loop has
  time again: those who came last lose, everyone else keeps a whole picture.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

SAMPLE_S = 1.0
SHED_AFTER = 3  # busy seconds in a row before players are shed
SHED_SHARE = 0.05  # of the players, per busy second, once shedding


class LoopLoad:
    """Samples the event loop thread's CPU share; calls ``on_busy`` after each busy second.

    ``on_busy(seconds)`` gets how many busy seconds have come in a row.
    """

    def __init__(self, limit: float, on_busy: Callable[[int], None]) -> None:
        self.limit = limit
        self.share = 0.0
        self._on_busy = on_busy
        self._busy_for = 0
        self._timer: asyncio.TimerHandle | None = None
        self._cpu = 0.0
        self._at = 0.0

    @property
    def busy(self) -> bool:
        return self.share >= self.limit

    def start(self) -> None:
        """Start sampling on the running loop; harmless when already started."""
        if self._timer is None:
            self._cpu, self._at = time.thread_time(), time.monotonic()
            self._timer = asyncio.get_running_loop().call_later(SAMPLE_S, self._sample)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sample(self) -> None:
        cpu, at = time.thread_time(), time.monotonic()
        self.share = (cpu - self._cpu) / max(at - self._at, 1e-6)
        self._cpu, self._at = cpu, at
        self._timer = asyncio.get_running_loop().call_later(SAMPLE_S, self._sample)
        self._busy_for = self._busy_for + 1 if self.busy else 0
        if self._busy_for:
            self._on_busy(self._busy_for)
