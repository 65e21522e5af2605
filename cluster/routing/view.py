"""What a node knows of the cluster between registry reads: the latest snapshot and its age.

The heartbeat refreshes the view once per beat with one registry read
(``Registry.snapshot()``); routing decisions, readiness and the dashboard read
the view, never the registry, so they cost microseconds and keep working for a
while when the registry is slow or away. ``age_s`` tells how stale the view is;
readers decide how much staleness they accept.
"""

from __future__ import annotations

import asyncio
import time

from cluster.types import ClusterSnapshot


class ClusterView:
    """The latest ``ClusterSnapshot`` this node read, and a way to wait for the next one."""

    def __init__(self) -> None:
        self.snapshot: ClusterSnapshot | None = None
        """None until the first successful read."""
        self._refreshed_at: float | None = None
        self._updated = asyncio.Condition()

    @property
    def age_s(self) -> float:
        """Seconds since the last successful read; infinite before the first."""
        if self._refreshed_at is None:
            return float("inf")
        return time.monotonic() - self._refreshed_at

    async def update(self, snapshot: ClusterSnapshot) -> None:
        """Take a fresh read and wake everyone waiting for one."""
        self.snapshot = snapshot
        self._refreshed_at = time.monotonic()
        async with self._updated:
            self._updated.notify_all()

    async def next_update(self, timeout_s: float) -> ClusterSnapshot | None:
        """The next snapshot read after this call, or None if none came within ``timeout_s``."""
        async with self._updated:
            try:
                await asyncio.wait_for(self._updated.wait(), timeout_s)
            except TimeoutError:
                return None
        return self.snapshot
