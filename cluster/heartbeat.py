"""The task that keeps a node alive in the registry and tells it the node's load.

A node counts as alive only while its heartbeat is fresh on the registry's
clock, so this loop is the node's lease on its place in the cluster. It never
dies on a registry outage: it logs the outage once, keeps trying every
interval, and logs the recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from cluster.errors import RegistryUnavailable
from cluster.load import LoadSampler
from cluster.registry import Registry
from cluster.types import NodeInfo

logger = logging.getLogger(__name__)


class Heartbeat:
    """Beats every ``interval_s``; ``beat_now()`` brings the next beat forward (a new region)."""

    def __init__(
        self,
        registry: Registry,
        node_info: Callable[[], NodeInfo],
        sampler: LoadSampler,
        interval_s: float,
    ) -> None:
        self._registry = registry
        self._node_info = node_info
        self._sampler = sampler
        self._interval_s = interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.healthy = True
        """False while the registry cannot be reached; /healthz reports it."""
        self.acknowledged_at: float | None = None
        """``time.monotonic()`` of the last beat the registry took; readiness ages it."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="heartbeat")

    def beat_now(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Cancel the loop and wait for it; harmless when already stopped."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self._beat()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)

    async def _beat(self) -> None:
        info = self._node_info()
        try:
            known = await self._registry.heartbeat(info.id, info.node_group, self._sampler.sample())
            if not known:
                logger.warning("registry had forgotten node %s; registering it again", info.id)
                await self._registry.register(info)
        except RegistryUnavailable as error:
            if self.healthy:
                logger.error(
                    "heartbeat failed, registry unreachable (%s); retrying every %.1f s",
                    error,
                    self._interval_s,
                )
            self.healthy = False
            return
        if not self.healthy:
            logger.info("registry reachable again; node %s heartbeating", info.id)
        self.healthy = True
        self.acknowledged_at = time.monotonic()

    def registry_age_s(self) -> float | None:
        """Seconds since the registry last took a beat; None before the first."""
        if self.acknowledged_at is None:
            return None
        return time.monotonic() - self.acknowledged_at
