"""The streams of one node: the media engine, wrapped in the registry claims that make it a cluster.

Publishing claims the stream's main origin in the registry *before* any media
flows (a stream live on another node is refused with 409), renews that claim
with a lease while the publisher stays, and ends it when the publisher leaves.
A node that finds its claim taken (its lease lapsed while it was cut off) ends
its publisher rather than serve a stream the cluster believes is elsewhere.

Playing a stream this node does not carry starts a pull (``cluster.streams.pulls``)
that pulls it from the cluster; other nodes pull from this one through
``serve_downstream``.

This class is the node's facade over the media engine and its pulls (the HTTP
layer talks to it only), and a ``StreamListener`` subscribed to the engine's
events: they arrive here as plain calls and become registry writes on tasks it
owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from cluster.errors import ClusterError, NotFound, Overloaded, RegistryUnavailable, StreamBusy
from cluster.registry import Registry
from cluster.settings import Settings
from cluster.streams.access import StreamAccess
from cluster.streams.pulls import Pulls
from cluster.types import AppName, NodeId, NodeLoad, SessionKind, StreamId
from media.engine import MediaEngine
from media.errors import UnknownSession
from media.types import MediaStats, SessionDescription, StreamInfo

logger = logging.getLogger(__name__)

SessionRole = Literal["publisher", "player", "downstream"]
"""What a session URL addresses: WHIP, WHEP, or a downstream node's internal pull."""


class LocalStreams:
    """Publish and play on this node, and the registry state that goes with them."""

    def __init__(
        self,
        registry: Registry,
        settings: Callable[[], Settings],
        engine: MediaEngine,
        pulls: Pulls,
        access: StreamAccess,
        load: Callable[[], NodeLoad],
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._engine = engine
        self._pulls = pulls
        self._load = load
        self.access = access
        self._apps: dict[str, str] = {}
        """Streams published here → their app; reserved before the first await."""
        self._publishers: dict[str, str] = {}
        """Streams published here → the publisher's session id, once media is negotiated."""
        self._flowing: set[str] = set()
        """Streams published here whose media flows: only their claims are renewed."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._session_watchers: dict[str, Callable[[], None]] = {}
        self._live_watchers: dict[str, Callable[[], None]] = {}

    @property
    def lease_s(self) -> float:
        """A main-origin claim lasts as long as a node stays alive without a heartbeat."""
        return self._settings().node_dead_timeout_s

    def start(self) -> None:
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_leases(), name="stream-leases")

    async def authorize(
        self, app: str, stream_id: str, kind: SessionKind, token: str, client: str
    ) -> None:
        """Stream security (tokens, publish webhook) before any claim (``streams.access``)."""
        await self.access.check(app, stream_id, kind, token, client)

    async def check_publishable(self, app: str, stream_id: str) -> None:
        """Raise ``StreamBusy`` when ``publish`` would: published here, relayed here in
        another app, or live on another node (Ant Media answers ``streamIdInUse`` before
        the offer)."""
        self._check_takeable(app, stream_id)
        record = await self._registry.stream(StreamId(stream_id))
        if (
            record is not None
            and record.state == "live"
            and record.origin_node != self._settings().node_id
            and record.lease_expires_at > await self._registry.now()
        ):
            raise StreamBusy(f"stream {stream_id} is live on {record.origin_node}")

    def stream_info(self, app: str, stream_id: str) -> StreamInfo:
        """Codec, picture size and bitrates of a stream this node carries."""
        self._check_here(app, stream_id)
        return self._engine.stream_info(stream_id)

    async def publish(self, app: str, stream_id: str, offer_sdp: str) -> SessionDescription:
        """Claim the stream's main origin, then ingest the publisher (WHIP).

        A stream this node pulls for its players (typically held after its main
        origin was lost) is taken over in place: the pull is handed back and the
        players continue from the new publisher. Until its media flows, the claim
        lasts only the connect deadline and is not renewed, so an offer that never
        connects cannot keep a stream id from its real publisher.
        """
        self._check_takeable(app, stream_id)
        self._check_cpu()
        pulled = self._pulls.app_of(stream_id) is not None
        settings = self._settings()
        self._apps[stream_id] = app
        try:
            await self._registry.claim_stream(
                StreamId(stream_id),
                AppName(app),
                settings.node_id,
                settings.node_group,
                (),
                settings.connect_timeout_s,
            )
            try:
                if pulled:
                    await self._pulls.hand_over(stream_id)
                answer = await self._engine.publish(stream_id, offer_sdp)
            except BaseException:
                await self._registry.end_stream(StreamId(stream_id), settings.node_id)
                if pulled and self._engine.has_stream(stream_id):
                    self._pulls.adopt(app, stream_id)
                raise
        except BaseException:
            # The engine may have ended the stream already (stream_ended forgot it then).
            self._apps.pop(stream_id, None)
            raise
        self._publishers[stream_id] = answer.session_id
        return answer

    async def play(
        self,
        app: str,
        stream_id: str,
        offer_sdp: str,
        counted: Callable[[], None] | None = None,
    ) -> SessionDescription:
        """Add a player (WHEP), pulling the stream from the cluster first if this node lacks it.

        ``counted`` is called at the moment the player starts to count in the node's
        load (a routed client's reservation is settled then, not before).
        """
        await self._carry(app, stream_id)
        self._check_playable(app, stream_id)
        return await self._engine.play(stream_id, offer_sdp, counted=counted)

    async def offer_play(
        self, app: str, stream_id: str, counted: Callable[[], None] | None = None
    ) -> SessionDescription:
        """Add a player that expects our offer (Ant Media WebSocket play), pulling first
        and ``counted`` like ``play``; its answer comes through ``accept_answer``."""
        await self._carry(app, stream_id)
        self._check_playable(app, stream_id)
        return await self._engine.offer_play(stream_id, counted)

    async def _carry(self, app: str, stream_id: str) -> None:
        """Return once players can join the stream here: pull it if this node lacks it, or
        wait for the pull that is starting (the engine holds the id from the pull's first
        step, before the upstream's answer names the codecs players need)."""
        if stream_id in self._apps:
            return  # published here: ``_check_playable`` says whether it flows yet
        if not self._engine.has_stream(stream_id):
            await self._pulls.ensure(app, stream_id)
        else:
            await self._pull_started(app, stream_id)

    async def _pull_started(self, app: str, stream_id: str) -> None:
        """Wait for this node's pull of the stream if it is under way: the engine holds the
        id from the pull's first step, before the upstream's answer names the codecs."""
        starting = self._pulls.app_of(stream_id) is not None
        if starting and not self._engine.stream_codecs(stream_id):
            await self._pulls.ensure(app, stream_id)

    async def accept_answer(self, session_id: str, answer_sdp: str) -> None:
        await self._engine.accept_answer(session_id, answer_sdp)

    async def wait_connected(self, session_id: str) -> None:
        """Return once the session's peer is connected (``UnknownSession`` if it ends first)."""
        await self._engine.wait_connected(session_id)

    async def trickle(self, session_id: str, sdp_fragment: str) -> None:
        """Add a peer's trickled candidates to one of this node's sessions."""
        await self._engine.add_ice_candidates(session_id, sdp_fragment)

    async def close_session(self, session_id: str) -> None:
        """End one session; a publisher's takes its stream with it."""
        await self._engine.close_session(session_id)

    def watch_session(self, session_id: str, ended: Callable[[], None]) -> None:
        """Call ``ended`` once when the session ends, for whatever reason (signalling layers
        tell their client); a session that already ended calls it at once."""
        if self._engine.has_session(session_id):
            self._session_watchers[session_id] = ended
        else:
            ended()

    def watch_live(self, stream_id: str, live: Callable[[], None]) -> None:
        """Call ``live`` once when the stream published here starts flowing."""
        self._live_watchers[stream_id] = live

    def unwatch(self, session_id: str | None, stream_id: str | None = None) -> None:
        """Forget the watchers of a session and of a stream (a client that left)."""
        if session_id is not None:
            self._session_watchers.pop(session_id, None)
        if stream_id is not None:
            self._live_watchers.pop(stream_id, None)

    async def serve_downstream(
        self, app: str, stream_id: str, offer_sdp: str, downstream: NodeId
    ) -> SessionDescription:
        """Let another node pull a stream this node carries (internal WHEP); never pulls itself."""
        published_in = self._apps.get(stream_id)
        if not self._engine.has_stream(stream_id) or published_in not in (None, app):
            raise NotFound(f"stream {stream_id} is not on this node")
        await self._pull_started(app, stream_id)  # a burst reaches a tree before its pulls do
        answer = await self._engine.play(stream_id, offer_sdp, downstream=True)
        logger.info("node %s pulls %s from here", downstream, stream_id)
        return answer

    def check_session(self, app: str, role: SessionRole, stream_id: str, session_id: str) -> None:
        """A session URL names its app, kind and stream: all three must be the session's.

        Session ids are unguessable, but a URL that names another stream or kind
        must not reach the session anyway: a player's URL never ends a publisher.
        """
        try:
            session_stream, session_role = self._engine.session_of(session_id)
        except UnknownSession:
            raise NotFound("no such session") from None
        if (session_stream, session_role) != (stream_id, role) or self._app_of(stream_id) != app:
            raise NotFound("no such session")

    def _app_of(self, stream_id: str) -> str | None:
        """The app a stream on this node belongs to: where it was published, or pulled in."""
        return self._apps.get(stream_id) or self._pulls.app_of(stream_id)

    def _check_takeable(self, app: str, stream_id: str) -> None:
        """A publisher may take a stream id unless it is published here, or relayed in
        another app (a relayed one of the same app is taken over in place)."""
        if stream_id in self._apps:
            raise StreamBusy(f"stream {stream_id} is already being published on this node")
        pulled_in = self._pulls.app_of(stream_id)
        if pulled_in not in (None, app):
            raise StreamBusy(f"stream {stream_id} is played here in {pulled_in}, not in {app}")

    def _check_here(self, app: str, stream_id: str) -> None:
        published_in = self._apps.get(stream_id)
        if not self._engine.has_stream(stream_id) or published_in not in (None, app):
            raise NotFound(f"stream {stream_id} is not live in {app} on this node")

    def _check_playable(self, app: str, stream_id: str) -> None:
        self._check_here(app, stream_id)
        self._check_cpu()
        settings = self._settings()
        stats = self._engine.stats()
        if stats.players >= settings.max_players:
            raise Overloaded(f"this node serves its limit of {settings.max_players} players")
        if stats.bitrate_out_kbps >= settings.max_bitrate_kbps:
            raise Overloaded(
                f"this node sends {stats.bitrate_out_kbps:.0f} kbit/s, its limit "
                f"(server.maxBitrateKbps) is {settings.max_bitrate_kbps}"
            )

    def _check_cpu(self) -> None:
        """New publishers and players are refused while the last sampled CPU is over the limit."""
        cpu = self._load().cpu * 100
        limit = self._settings().cpu_limit
        if cpu > limit:
            raise Overloaded(f"CPU at {cpu:.0f}% is above server.cpu_limit ({limit}%)")

    def stats(self) -> MediaStats:
        """The media plane's counters, for /metrics and the load sampler."""
        return self._engine.stats()

    def region_changed(self) -> None:
        """The node moved to another region: every pull re-plans now."""
        self._pulls.wake_all()

    async def close(self) -> None:
        """End every session (publishers end their streams in the registry), then wait for it."""
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        await self._pulls.close()
        await self._engine.close()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # StreamListener: called by the engine on its loop; registry work goes to owned tasks.

    def stream_started(self, stream_id: str, codecs: tuple[str, ...]) -> None:
        app = self._apps.get(stream_id)
        if app is None:
            return
        live = self._live_watchers.pop(stream_id, None)
        if live is not None:
            live()
        logger.info("stream %s is live in %s (%s)", stream_id, app, "+".join(codecs))
        self._flowing.add(stream_id)
        settings = self._settings()
        self._spawn(
            self._registry.claim_stream(
                StreamId(stream_id),
                AppName(app),
                settings.node_id,
                settings.node_group,
                codecs,
                self.lease_s,
            ),
            f"record the codecs of {stream_id}",
        )

    def stream_ended(self, stream_id: str) -> None:
        if self._apps.pop(stream_id, None) is None:
            return
        self._publishers.pop(stream_id, None)
        self._flowing.discard(stream_id)
        self._live_watchers.pop(stream_id, None)
        logger.info("stream %s ended: its publisher left", stream_id)
        node_id = self._settings().node_id
        self._spawn(self._registry.end_stream(StreamId(stream_id), node_id), f"end {stream_id}")

    def session_ended(self, session_id: str) -> None:
        """WebSocket sessions tell their client; WHIP/WHEP clients see their connection close."""
        ended = self._session_watchers.pop(session_id, None)
        if ended is not None:
            ended()

    def players_changed(self, stream_id: str, players: int) -> None:
        logger.debug("stream %s has %d players here", stream_id, players)

    def upstream_lost(self, stream_id: str, closed_by_upstream: bool) -> None:
        self._pulls.upstream_lost(stream_id, closed_by_upstream)

    def _spawn(self, work: Coroutine[Any, Any, object], doing: str) -> None:
        async def run() -> None:
            try:
                await work
            except ClusterError as error:  # the registry is down, or the claim moved on
                logger.error("could not %s: %s", doing, error)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _renew_leases(self) -> None:
        while True:
            settings = self._settings()
            await asyncio.sleep(settings.heartbeat_interval_s)
            for stream_id, session_id in list(self._publishers.items()):
                if stream_id not in self._flowing:
                    continue  # its claim runs out with the connect deadline
                try:
                    kept = await self._registry.renew_stream(
                        StreamId(stream_id),
                        settings.node_id,
                        self.lease_s,
                        players=self._engine.players(stream_id),
                    )
                except RegistryUnavailable as error:
                    logger.warning("could not renew the claim on %s: %s", stream_id, error)
                    continue
                if not kept and self._publishers.get(stream_id) == session_id:
                    logger.error(
                        "lost the claim on stream %s to another node; ending its publisher here",
                        stream_id,
                    )
                    with contextlib.suppress(UnknownSession):
                        await self._engine.close_session(session_id)
