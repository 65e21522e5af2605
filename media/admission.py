"""Joining players' handshakes, a few at a time: what keeps a join storm off the forwarding.

A joining player costs the media event loop several milliseconds of CPU (its
SDP, aiortc's transceivers, ICE checks, the DTLS handshake, the first RTCP), on
the one thread that also takes in every stream's packets. Two hundred players
joining at once would keep that thread busy for seconds in a row, and every
watcher's frames would wait behind their handshakes. So joins queue here: at
most ``slots`` players are between their offer and their connection (ICE and
DTLS done, forwarding started) at a time, and the others wait their turn, in
the order they came, for up to ``wait_s``; only then are they refused
(``Overloaded``: 503, try again). The loop thereby always has a bounded amount
of handshake work queued in front of a stream's next packet, whatever the storm.

A downstream node pulling the stream goes ahead of every waiting player: its
handshake is the one that brings media back to all of that node's players
after a failover, and waiting behind a join storm would stretch their gap.

A turn ends when its player connects or ends, and after ``HOLD_S`` at the most:
a client that never starts ICE must not keep a turn for the whole
``connect_timeout_s``.

``handshaking(since)`` tells ``media.load`` whether a turn was held at any time
since then: a second spent on handshakes says nothing about what forwarding
costs, so the overload guard does not count it as such.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from media.errors import Overloaded

HOLD_S = 5.0  # the longest a turn is held by a player that does not connect


class Turn:
    """One player's turn to handshake; ``done()`` gives it back (harmless twice)."""

    def __init__(self, queue: HandshakeQueue) -> None:
        self._queue: HandshakeQueue | None = queue
        self._expiry = asyncio.get_running_loop().call_later(HOLD_S, self.done)

    def done(self) -> None:
        queue, self._queue = self._queue, None
        if queue is not None:
            self._expiry.cancel()
            queue.release()


class HandshakeQueue:
    """At most ``slots`` turns at a time; the others wait in order, ``wait_s`` at most."""

    def __init__(self, slots: int, wait_s: float) -> None:
        self.slots = slots
        self.wait_s = wait_s
        self.active = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._first: deque[asyncio.Future[None]] = deque()
        """Downstream nodes' tickets, served before any in ``_waiting``."""
        self._last_held = 0.0  # monotonic time the last turn ended

    @property
    def waiting(self) -> int:
        return len(self._first) + len(self._waiting)

    def handshaking(self, since: float) -> bool:
        """Whether a turn was held at any time since ``since`` (``time.monotonic``)."""
        return self.active > 0 or self._last_held >= since

    async def admit(self, *, first: bool = False) -> Turn:
        """A turn: at once if a slot is free, else once the players ahead are through.

        ``first``: a downstream node, ahead of every waiting player (behind the
        downstream nodes already waiting).
        """
        if self.active < self.slots and not self.waiting:
            self.active += 1
            return Turn(self)
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line = self._first if first else self._waiting
        line.append(ticket)
        try:
            await asyncio.wait_for(asyncio.shield(ticket), self.wait_s)
        except TimeoutError:
            if not ticket.done():
                ticket.cancel()
                line.remove(ticket)
                raise Overloaded(
                    f"{self.active} players are handshaking and {self.waiting} more wait;"
                    f" this one waited {self.wait_s:g} s"
                ) from None
        except asyncio.CancelledError:
            if ticket.done() and not ticket.cancelled():
                self.release()  # the turn was ours, but its player is gone
            else:
                ticket.cancel()
                line.remove(ticket)
            raise
        return Turn(self)

    def release(self) -> None:
        """A turn ended: the next waiting player's comes (the slot passes straight on)."""
        for line in (self._first, self._waiting):
            while line:
                ticket = line.popleft()
                if not ticket.done():
                    ticket.set_result(None)
                    return
        self.active -= 1
        self._last_held = time.monotonic()
