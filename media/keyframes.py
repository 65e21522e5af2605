"""Coalescing keyframe requests: many players' asks become one PLI upstream."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class KeyframeRequests:
    """Sends at most one keyframe request per ``interval`` seconds, never losing one.

    A player joining, a player's PLI/FIR and a player's queue overflowing all ask
    for a keyframe; a burst of them (a hundred players joining at once) must reach
    the publisher as one request, and a request inside the quiet interval is sent
    when the interval ends rather than dropped.
    """

    def __init__(self, interval: float, send: Callable[[], None] | None = None) -> None:
        self._interval = interval
        self._send = send
        self._last = -interval
        self._deferred: asyncio.TimerHandle | None = None
        self.sent = 0

    def connect(self, send: Callable[[], None]) -> None:
        """Name the upstream that receives requests (a new pull replaces the lost one)."""
        self._send = send

    def disconnect(self, send: Callable[[], None]) -> None:
        """Forget ``send``, unless another upstream has been connected since."""
        if self._send == send:
            self._send = None

    def request(self) -> None:
        if self._deferred is not None:
            return
        wait = self._last + self._interval - time.monotonic()
        if wait <= 0:
            self._fire()
        else:
            self._deferred = asyncio.get_running_loop().call_later(wait, self._fire)

    def close(self) -> None:
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        self._send = None

    def _fire(self) -> None:
        self._deferred = None
        self._last = time.monotonic()
        if self._send is not None:
            self.sent += 1
            self._send()
