"""The task that keeps a node alive in the registry and tells it the node's load.

A node counts as alive only while its heartbeat is fresh on the registry's
clock, so this loop is the node's lease on its place in the cluster. It never
dies on a registry outage: it logs the outage once, keeps trying every
interval, and logs the recovery. Each beat also refreshes the node's
``ClusterView`` with one registry read, so what the node knows of the cluster
is never older than a beat while the registry answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from cluster.errors import RegistryUnavailable
from cluster.load import LoadSampler, usable_cores
from cluster.registry import Registry
from cluster.routing.view import ClusterView
from cluster.settings import Settings
from cluster.types import NodeCapacity, NodeInfo

logger = logging.getLogger(__name__)

PRUNE_EVERY_S = 60.0
"""How often a node prunes streams that ended long ago (any node may; the delete is idempotent)."""

FORGET_AFTER_DEAD_TIMEOUTS = 2
"""A node silent for this many ``cluster.nodeDeadTimeoutMs`` is forgotten with its pull rows
(any node may, once per dead timeout); also how long a node must have reached the registry
itself before it judges others, so that after an outage they have had time to beat again."""


def node_info(settings: Settings) -> NodeInfo:
    """How a node with these settings introduces itself to the registry."""
    return NodeInfo(
        id=settings.node_id,
        node_group=settings.node_group,
        public_url=settings.public_url,
        internal_url=settings.internal_url,
        capacity=NodeCapacity(
            cores=usable_cores(),
            max_players=settings.max_players,
            max_bitrate_kbps=settings.max_bitrate_kbps,
            cpu_limit=settings.cpu_limit,
        ),
    )


class Heartbeat:
    """Beats every heartbeat interval; ``beat_now()`` brings the next beat forward."""

    def __init__(
        self,
        registry: Registry,
        settings: Callable[[], Settings],
        sampler: LoadSampler,
        view: ClusterView,
        arrivals: Callable[[], int],
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._sampler = sampler
        self._view = view
        self._pruned_at = time.monotonic()
        """The first prune comes one period after start-up, not in the node's first beat."""
        self._reachable_since = time.monotonic()
        """Since when the registry has answered every beat."""
        self._forgot_at = 0.0
        self._arrivals = arrivals
        """Clients that came with a reservation since the last call (the router counts them)."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.healthy = True
        """False while the registry cannot be reached; /healthz reports it."""

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
                await asyncio.wait_for(self._wake.wait(), self._settings().heartbeat_interval_s)

    async def _beat(self) -> None:
        settings = self._settings()
        info = node_info(settings)
        try:
            arrived = self._arrivals()
            known = await self._registry.heartbeat(
                info.id, info.node_group, self._sampler.sample(), arrived
            )
            if not known:
                logger.warning("registry had forgotten node %s; registering it again", info.id)
                await self._registry.register(info, new_life=False)
            await self._view.update(await self._registry.snapshot())
        except RegistryUnavailable as error:
            if self.healthy:
                logger.error(
                    "heartbeat failed, registry unreachable (%s); retrying every %.1f s",
                    error,
                    settings.heartbeat_interval_s,
                )
            self.healthy = False
            return
        if not self.healthy:
            logger.info("registry reachable again; node %s heartbeating", info.id)
            self._reachable_since = time.monotonic()
        self.healthy = True
        await self._forget_dead(settings.node_dead_timeout_s)
        await self._prune(settings.ended_stream_retention_s)

    async def _forget_dead(self, dead_timeout_s: float) -> None:
        now = time.monotonic()
        waited = FORGET_AFTER_DEAD_TIMEOUTS * dead_timeout_s
        if now - self._forgot_at < dead_timeout_s or now - self._reachable_since < waited:
            return
        self._forgot_at = now
        try:
            await self._registry.forget_dead_nodes(waited)
        except RegistryUnavailable as error:
            logger.warning("could not forget dead nodes: %s", error)

    async def _prune(self, retention_s: float) -> None:
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        try:
            await self._registry.prune_ended_streams(retention_s)
        except RegistryUnavailable as error:
            logger.warning("could not prune ended streams: %s", error)
