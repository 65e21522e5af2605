"""How busy forwarding keeps the media plane's event loop: what admission and shedding go by.

Everything a node does for its streams that is not the native fan-out happens
on one event loop: ingest, RTCP, ICE consent, DTLS handshakes of joining
players, signalling. When that thread has no time left, frames wait in the
ingest socket and reach every player late and together. The fan-out itself runs
on its worker threads (``media._fanout``), one per usable core, which the loop
hands each frame to; when they have no time left, frames wait in their queue
and the loop, once it is full, waits for them. So the engine samples, once a
second, the CPU time of the loop's thread (``time.thread_time``) and of the
workers (``_fanout.cpu_time``): CPU actually used, so other processes crowding
the machine lower the figures rather than raise them. The share that counts is
the fullest of three: the loop's thread (one core at most), the workers' (per
worker), and both together over the cores the process may use (the loop and
the workers share them).

What the guard goes by is the share *forwarding* takes: a second during which
players were handshaking (``media.admission``) shows a burst that the handshake
queue already bounds and that ends with the storm, not what the players already
watching cost, so the guard keeps the share of the last second without
handshakes. If joins never let up for ``STALE_S`` (one at least every second),
the whole share counts again: joins that never end are load like any other. Then:

- new players are refused (``Overloaded``: 503) while that share is at or above
  ``MediaConfig.busy_limit`` (downstream nodes are not: see ``MediaEngine._turn``);
- past ``SHED_AFTER`` such seconds in a row, the newest players are ended, a few
  at a time (``SHED_SHARE`` of them, at least one, per second), until the loop
  has time again: those who came last lose, everyone else keeps a whole picture.

The loop's CPU share cannot tell how far demand is over what the loop can do: a
saturated loop reads 100 % either way, and a share of the last quiet second can
stand in for seconds while joins (or clients retrying their refused joins) keep
coming. The ingest sockets can: what the loop has not read yet waits there
(``backlog``, the bytes the kernel holds in the fullest ingest socket). Media
already late is overload whatever the cause, so a backlog of ``BEHIND_BYTES`` or
more counts as a busy second, handshakes or not. Only while it grows or stands:
a backlog shrinking by ``CATCHING_UP`` a second or faster is the loop catching up
after players were shed, and shedding more then would take players the node can
serve. Left to grow, a backlog makes every frame late for all and, past half a
second, delays the answers to the publisher's ICE consent checks, which come
through the same socket, until its connection and the stream with it expire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from media import _fanout

SAMPLE_S = 1.0
SHED_AFTER = 3  # busy seconds in a row before players are shed
SHED_SHARE = 0.05  # of the players, per busy second, once shedding
STALE_S = 10.0  # the longest the share of a second without handshakes stands in
BEHIND_BYTES = 256 << 10
"""Unread bytes in an ingest socket that mean media is late: the kernel counts about 2.3 KB
per queued 1.2 KB datagram, so this is about 1 s of a 1 Mbit/s stream, 0.1 s of 10 Mbit/s."""
CATCHING_UP = 0.2  # the share of its backlog a recovering loop reads away per second


class LoopLoad:
    """Samples the event loop thread's CPU share; calls ``on_busy`` after each busy second.

    ``on_busy(seconds)`` gets how many busy seconds have come in a row;
    ``handshaking(since)`` says whether players were handshaking since that
    ``time.monotonic()`` instant; ``backlog()`` says how many bytes wait unread in
    the fullest ingest socket. ``cpu``, ``fanout_cpu`` and ``clock`` are the loop
    thread's CPU clock, the fan-out workers' and the wall clock; ``workers`` and
    ``cores`` how many workers there are and how many cores they share with the
    loop (tests give their own).
    """

    def __init__(
        self,
        limit: float,
        on_busy: Callable[[int], None],
        handshaking: Callable[[float], bool],
        backlog: Callable[[], int],
        cpu: Callable[[], float] = time.thread_time,
        fanout_cpu: Callable[[], float] = _fanout.cpu_time,
        workers: int = 0,
        cores: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.share = 0.0
        """The loop thread's whole CPU share over the last second."""
        self.fanout = 0.0
        """The fan-out workers' CPU share over the last second, per worker."""
        self.forwarding = 0.0
        """The share the guard goes by: the last second's without handshakes (see above)."""
        self.backlog = 0
        """Bytes unread in the fullest ingest socket at the last sample."""
        self._on_busy = on_busy
        self._handshaking = handshaking
        self._backlog = backlog
        self._cpu_clock, self._fanout_clock, self._clock = cpu, fanout_cpu, clock
        self._workers = max(workers or _fanout.workers(), 1)
        self._cores = max(cores or _fanout.usable_cores(), 1)
        self._busy_for = 0
        self._timer: asyncio.TimerHandle | None = None
        self._cpu = 0.0
        self._fanout_cpu = 0.0
        self._at = 0.0
        self._quiet_at = 0.0  # when the last second without handshakes ended

    @property
    def busy(self) -> bool:
        """Whether new players are refused: forwarding at its limit or media late."""
        return self.forwarding >= self.limit or self.behind

    @property
    def behind(self) -> bool:
        return self.backlog >= BEHIND_BYTES

    def start(self) -> None:
        """Start sampling on the running loop; harmless when already started."""
        if self._timer is None:
            self.reset()
            self._timer = asyncio.get_running_loop().call_later(SAMPLE_S, self._tick)

    def reset(self) -> None:
        """Begin a sample now."""
        self._cpu, self._fanout_cpu, self._at = (
            self._cpu_clock(),
            self._fanout_clock(),
            self._clock(),
        )
        self._quiet_at = self._at

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def sample(self) -> None:
        """End a sample (and begin the next): update the shares, count a busy second."""
        cpu, fanout_cpu, at = self._cpu_clock(), self._fanout_clock(), self._clock()
        elapsed = max(at - self._at, 1e-6)
        self.share = (cpu - self._cpu) / elapsed
        fanout = (fanout_cpu - self._fanout_cpu) / elapsed
        self.fanout = fanout / self._workers
        whole = max(self.share, self.fanout, (self.share + fanout) / self._cores)
        if not self._handshaking(self._at):
            self.forwarding, self._quiet_at = whole, at
        elif at - self._quiet_at > STALE_S:
            self.forwarding = whole
        self._cpu, self._fanout_cpu, self._at = cpu, fanout_cpu, at
        before, self.backlog = self.backlog, self._backlog()
        catching_up = before >= BEHIND_BYTES and self.backlog <= before * (1 - CATCHING_UP)
        self._busy_for = self._busy_for + 1 if self.busy and not catching_up else 0
        if self._busy_for:
            self._on_busy(self._busy_for)

    def _tick(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(SAMPLE_S, self._tick)
        self.sample()
