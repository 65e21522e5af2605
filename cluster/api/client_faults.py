"""Log lines for faults of clients, which clients must not be able to multiply.

A client that disconnects mid-upload, stalls its headers or sends a body too
slowly is worth one short line to an operator, never a traceback; and a
thousand such clients are worth a few lines and a count, never a thousand
lines. ``ClientFaults`` writes at most ``burst`` lines of each kind per
``window_s``, then one line saying how many it left out.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

SHOWN_CHARS = 120
"""What a line quotes of a client's own text (a path, a name) at most."""


def shown(text: str) -> str:
    """Client-supplied text as a log line quotes it: short, whatever its length."""
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


class ClientFaults:
    """Rate-limited, one-line reports of client faults, shared by the HTTP server and the app.

    Each kind of fault has its own budget, so that a flood of one kind (clients
    leaving mid-upload) cannot hide another (connections stalled on purpose).
    """

    def __init__(self, burst: int = 20, window_s: float = 60.0) -> None:
        self._burst = burst
        self._window_s = window_s
        self._windows: dict[str, _Window] = {}

    def report(self, client: str, kind: str, what: str) -> None:
        """One line: which client, what it did (already short: quote with ``shown``)."""
        now = time.monotonic()
        window = self._windows.setdefault(kind, _Window(now))
        if now - window.start >= self._window_s:
            if window.left_out:
                logger.info(
                    "%d more client faults (%s) in the last %.0f s were not logged",
                    window.left_out,
                    kind,
                    now - window.start,
                )
            window.start, window.written, window.left_out = now, 0, 0
        if window.written >= self._burst:
            window.left_out += 1
            return
        window.written += 1
        logger.info("client %s: %s", shown(client), what)


@dataclass
class _Window:
    start: float
    written: int = 0
    left_out: int = 0
