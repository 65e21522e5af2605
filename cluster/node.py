"""One node's lifecycle: join the cluster, stay in it, change region, leave it.

``start_node`` is the one place a node is put together: it builds each part in
order — registry, media engine, load sampler, pulls, streams, cluster view,
heartbeat — and passes each its collaborators. Nothing builds its own.

start → serve → drain → close, each step explicit and idempotent, so a
signal handler, a test and a REST call can all drive it without caring what
already happened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from cluster.heartbeat import Heartbeat, node_info
from cluster.load import LoadSampler
from cluster.logs import apply_log_level
from cluster.properties import update_properties
from cluster.registry import Registry
from cluster.registry.migrate import migrate
from cluster.router import Router
from cluster.routing.readiness import Readiness, Verdict
from cluster.routing.view import ClusterView
from cluster.settings import LiveSettings, Settings, changed_settings, differing
from cluster.streams.access import StreamAccess
from cluster.streams.events import StreamEvents
from cluster.streams.local import LocalStreams
from cluster.streams.pulls import Pulls
from cluster.tls import client_context, registry_ssl
from cluster.types import NodeInfo, NodeState
from media.config import MediaConfig
from media.engine import MediaEngine

logger = logging.getLogger(__name__)


async def start_node(settings: Settings) -> Node:
    """Build a node's parts, register it, start its background tasks."""
    registry_tls = registry_ssl(settings)
    node_tls = client_context(settings)
    if settings.embedded_registry:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await migrate(settings.registry_url)
    registry = await Registry.connect(
        settings.registry_url, dead_after_s=settings.node_dead_timeout_s, tls=registry_tls
    )
    try:
        live = LiveSettings(settings)
        events = StreamEvents()
        engine = MediaEngine(
            MediaConfig(
                candidate_addresses=settings.candidate_addresses,
                ice_servers=settings.ice_servers,
                connect_timeout_s=settings.connect_timeout_s,
            ),
            events,
        )
        sampler = LoadSampler(engine.stats)
        pulls = Pulls(registry, live, engine, node_tls)
        access = StreamAccess(registry, live)
        streams = LocalStreams(registry, live, engine, pulls, access, sampler.latest)
        events.subscribe(streams)
        view = ClusterView()
        router = Router.open(live, registry, view)
        heartbeat = Heartbeat(registry, live, sampler, view, router.take_arrivals)
        node = Node(live, registry, streams, sampler, view, heartbeat, router)
        await registry.register(node.info())
    except BaseException:
        await registry.close()
        raise
    heartbeat.start()
    streams.start()
    logger.info(
        "node %s joined the cluster in region %s at %s (registry: %s)",
        settings.node_id,
        settings.node_group,
        settings.public_url,
        "embedded" if settings.embedded_registry else "PostgreSQL",
    )
    return node


class Node:
    """A running node: its settings, registry client, streams, cluster view and heartbeat."""

    def __init__(
        self,
        settings: LiveSettings,
        registry: Registry,
        streams: LocalStreams,
        sampler: LoadSampler,
        view: ClusterView,
        heartbeat: Heartbeat,
        router: Router,
    ) -> None:
        self._settings = settings
        self.registry = registry
        self.streams = streams
        self.sampler = sampler
        self.view = view
        self.heartbeat = heartbeat
        self.router = router
        self.state: NodeState = "serving"
        self._settings_lock = asyncio.Lock()
        self._readiness = Readiness()
        self._closed = False
        self.draining = asyncio.Event()
        """Set when the node starts draining: signalling sockets say ``server_will_stop``."""

    @property
    def settings(self) -> Settings:
        return self._settings()

    def info(self) -> NodeInfo:
        return node_info(self._settings())

    def readiness(self) -> Verdict:
        """Whether new work should come here (``/readyz``): state, registry freshness, room."""
        s = self._settings()
        return self._readiness.check(
            self.state,
            self.view.age_s,
            s.view_stale_s,
            self.sampler.current(),
            self.info().capacity,
            s.cpu_limit,
            s.ready_resume_percent,
        )

    async def change_settings(self, changes: Mapping[str, str]) -> dict[str, str]:
        """Persist ``changes`` (properties key → raw value) and apply them live.

        The change is validated as a restart would read the file, so it can
        never store what a restart would refuse; a value that reads as the
        current one (``" eu "`` for ``eu``) is no change. Returns what changed,
        as written to the file.
        """
        async with self._settings_lock:
            old = self._settings()
            new = changed_settings(old, changes)
            written = {name: changes[name].strip() for name in differing(old, new, changes)}
            if not written:
                return written
            new = changed_settings(old, written)
            await asyncio.to_thread(update_properties, old.config_path, written)
            self._settings.replace(new)
        if new.log_level != old.log_level:
            apply_log_level(new.log_level)
        if self._settings().node_group != old.node_group:
            logger.info(
                "node %s moved from region %s to region %s",
                old.node_id,
                old.node_group,
                self._settings().node_group,
            )
            self.heartbeat.beat_now()
            self.streams.region_changed()
        return written

    async def drain(self) -> None:
        """Stop taking new work: the registry shows the node as draining."""
        if self.state == "draining":
            return
        self.state = "draining"
        self.draining.set()
        logger.info("node %s draining", self._settings().node_id)
        await self.registry.drain(self._settings().node_id)

    async def close(self) -> None:
        """Drain, end every media session, leave the registry; harmless when already closed."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.drain()
            await self.streams.close()
            await self.heartbeat.stop()
            await self.registry.deregister(self._settings().node_id)
            logger.info("node %s left the cluster", self._settings().node_id)
        finally:
            await self.streams.close()
            await self.heartbeat.stop()
            await self.registry.close()
            self.router.close()
