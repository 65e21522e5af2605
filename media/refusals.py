"""How refused joins are told: at most one log line a second, saying how many it stands for.

Under a join storm at a node's limit, clients retry their refused joins every
fraction of a second, hundreds at a time; a warning for each buried everything
else in the log (a bench run wrote thousands of identical lines a second). The
first refusal after a quiet second is logged at once, with its reason; the
refusals after it within the second are counted, and the next line says how many
it folded.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

INTERVAL_S = 1.0


class Refusals:
    """Logs refusals to ``logger``, one line per ``INTERVAL_S`` at most."""

    def __init__(self, logger: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._clock = clock
        self._logged_at = -math.inf
        self._folded = 0

    def refused(self, role: str, stream_id: str, reason: str) -> None:
        now = self._clock()
        if now - self._logged_at < INTERVAL_S:
            self._folded += 1
            return
        folded = f" ({self._folded} more refused since the last such line)" if self._folded else ""
        self._logger.warning("refused a %s for %s: %s%s", role, stream_id, reason, folded)
        self._logged_at, self._folded = now, 0
