"""One node's lifecycle: join the cluster, stay in it, change region, leave it.

start → serve → drain → close, each step explicit and idempotent, so a
signal handler, a test and a REST call can all drive it without caring what
already happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace

from cluster.heartbeat import Heartbeat
from cluster.load import LoadSampler, usable_cores
from cluster.logs import apply_log_level
from cluster.properties import update_properties
from cluster.registry import Registry
from cluster.registry.migrate import migrate
from cluster.routing.readiness import Readiness, Verdict
from cluster.settings import Settings, changed_settings
from cluster.streams.local import LocalStreams
from cluster.types import NodeCapacity, NodeInfo, NodeState

logger = logging.getLogger(__name__)


class Node:
    """A running node's control plane: its settings, its registry client and its heartbeat."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self._settings = settings
        self.registry = registry
        self.state: NodeState = "serving"
        self.sampler = LoadSampler(lambda: self.streams.media_counters())
        self.streams = LocalStreams(registry, lambda: self._settings, lambda: self.sampler.last)
        self.heartbeat = Heartbeat(registry, self.info, self.sampler, settings.heartbeat_interval_s)
        self._settings_lock = asyncio.Lock()
        self._readiness = Readiness()
        self._closed = False
        self.draining = asyncio.Event()
        """Set when the node starts draining: signalling sockets say ``server_will_stop``."""

    @classmethod
    async def start(cls, settings: Settings) -> Node:
        """Connect to the registry (migrating the embedded one), register, start heartbeating."""
        if settings.embedded_registry:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            await migrate(settings.registry_url)
        registry = await Registry.connect(
            settings.registry_url, dead_after_s=settings.node_dead_timeout_s
        )
        node = cls(settings, registry)
        try:
            await registry.register(node.info())
        except BaseException:
            await registry.close()
            raise
        node.heartbeat.start()
        node.streams.start()
        logger.info(
            "node %s joined the cluster in region %s at %s (registry: %s)",
            settings.node_id,
            settings.node_group,
            settings.public_url,
            "embedded" if settings.embedded_registry else "PostgreSQL",
        )
        return node

    @property
    def settings(self) -> Settings:
        return self._settings

    def info(self) -> NodeInfo:
        s = self._settings
        return NodeInfo(
            id=s.node_id,
            node_group=s.node_group,
            public_url=s.public_url,
            internal_url=s.internal_url,
            capacity=NodeCapacity(
                cores=usable_cores(),
                max_players=s.max_players,
                max_bitrate_kbps=s.max_bitrate_kbps,
            ),
        )

    def readiness(self) -> Verdict:
        """Whether new work should come here (``/readyz``): state, registry freshness, room."""
        s = self._settings
        load = replace(self.streams.media_counters(), cpu=self.sampler.last.cpu)
        return self._readiness.check(
            self.state,
            self.heartbeat.registry_age_s(),
            s.view_stale_s,
            load,
            self.info().capacity,
            s.cpu_limit,
            s.ready_resume_percent,
        )

    async def change_settings(self, changes: Mapping[str, str]) -> Settings:
        """Persist ``changes`` (properties key → raw value) and apply them live.

        The change is validated as a restart would read the file, so it can
        never store what a restart would refuse.
        """
        async with self._settings_lock:
            old = self._settings
            new = changed_settings(old, changes)
            await asyncio.to_thread(update_properties, old.config_path, dict(changes))
            self._settings = new
        if new.log_level != old.log_level:
            apply_log_level(new.log_level)
        if self._settings.node_group != old.node_group:
            logger.info(
                "node %s moved from region %s to region %s",
                old.node_id,
                old.node_group,
                self._settings.node_group,
            )
            self.heartbeat.beat_now()
            self.streams.pulls.wake_all()
        return self._settings

    async def drain(self) -> None:
        """Stop taking new work: the registry shows the node as draining."""
        if self.state == "draining":
            return
        self.state = "draining"
        self.draining.set()
        logger.info("node %s draining", self._settings.node_id)
        await self.registry.drain(self._settings.node_id)

    async def close(self) -> None:
        """Drain, end every media session, leave the registry; harmless when already closed."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.drain()
            await self.streams.close()
            await self.heartbeat.stop()
            await self.registry.deregister(self._settings.node_id)
            logger.info("node %s left the cluster", self._settings.node_id)
        finally:
            await self.streams.close()
            await self.heartbeat.stop()
            await self.registry.close()
