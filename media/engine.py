"""The media engine: the media plane's one entry point for the control plane.

::

    engine = MediaEngine(MediaConfig(candidate_addresses=("203.0.113.7",)), listener)
    answer = await engine.publish("s1", offer_sdp)          # WHIP
    answer = await engine.play("s1", offer_sdp)             # WHEP (client offer)
    answer = await engine.play("s1", offer_sdp, downstream=True) # a downstream node pulling
    offer = await engine.offer_play("s1")                   # Ant Media WebSocket play
    await engine.accept_answer(offer.session_id, answer_sdp)
    await engine.wait_connected(offer.session_id)             # Ant Media's play_started
    session_id = await engine.pull("s1", exchange)          # from an upstream node
    await engine.add_ice_candidates(session_id, fragment)   # trickle (PATCH)
    await engine.close_session(session_id)                  # DELETE
    await engine.end_stream("s1")                           # a held stream's grace ran out
    await engine.close()

Publishing and pulling are the same thing to the engine: an ingest session that
feeds a stream's ``Source``. Players and downstreams read from the source.
Every session is owned here and closed here; the ``StreamListener`` hears about
streams starting and ending, sessions ending and player counts changing. Errors
are the named ones of ``media.errors``; nothing here knows about HTTP or the
cluster.

Failover: a stream outlives its pull. When a pull fails, is closed by its
upstream or goes silent, the stream is *held*: its source and players stay,
the listener hears ``upstream_lost``, and the next ``pull`` of that stream
feeds the same source, so players continue without renegotiating (their
forwarders re-base RTP timestamps on the new upstream's epoch, and start again
at its first keyframe). A publisher leaving still ends its stream.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from media import _fanout, aiortc_seam, codecs, sdp
from media.admission import HandshakeQueue, Turn
from media.config import MediaConfig
from media.errors import (
    BadSdp,
    CodecMismatch,
    MediaError,
    Overloaded,
    StreamAlreadyPublished,
    UnknownSession,
    UnknownStream,
)
from media.load import SHED_AFTER, SHED_SHARE, LoopLoad
from media.meter import Meter
from media.picture import picture_size
from media.refusals import Refusals
from media.sessions import IngestSession, PlayRole, PlaySession, Role, Session
from media.source import Source
from media.types import Exchange, MediaStats, SessionDescription, StreamInfo, StreamListener

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Stream:
    """One stream on this node: its source, who feeds it and who watches it.

    ``upstream`` is None while the stream is held (its pull was lost);
    ``players`` holds players and downstreams alike, told apart by their role.
    """

    source: Source
    upstream: IngestSession | None = None
    players: dict[str, PlaySession] = field(default_factory=dict)

    def count(self, role: Role) -> int:
        return sum(1 for player in self.players.values() if player.role == role)


class MediaEngine:
    """Ingests WebRTC streams and relays their encoded media to WebRTC players."""

    def __init__(self, config: MediaConfig, listener: StreamListener) -> None:
        aiortc_seam.check()
        aiortc_seam.defer_bitrate_estimators()
        threads = _fanout.start_workers(config.fanout_threads)
        if config.fanout_threads and threads != config.fanout_threads:
            logger.warning(
                "fan-out runs on the %d threads this process started first, not %d",
                threads,
                config.fanout_threads,
            )
        self._config = config
        self._listener = listener
        self._streams: dict[str, _Stream] = {}
        self._sessions: dict[str, Session] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._meter = Meter()
        self._handshakes = HandshakeQueue(config.handshake_slots, config.handshake_wait_s)
        self._load = LoopLoad(
            config.busy_limit, self._busy, self._handshakes.handshaking, self._backlog
        )
        self._refusals = Refusals(logger)
        self._closed = False

    async def publish(self, stream_id: str, offer_sdp: str) -> SessionDescription:
        """Ingest a publisher (WHIP): its offer in, our answer out.

        A stream this node pulls (held or not) is taken over in place: its pull
        goes, and its players and downstreams continue from the publisher, as
        after a failover. Its codecs must be the held ones (else
        ``CodecMismatch``: the players negotiated them); if the publisher's
        negotiation fails, the stream is left held, without an upstream.
        """
        tracks = sdp.ingestable(sdp.parse(offer_sdp))
        self._check_open()
        stream = self._streams.get(stream_id)
        if stream is not None:
            if stream.upstream is not None and stream.upstream.role == "publisher":
                raise StreamAlreadyPublished(stream_id)
            if stream.source.tracks:
                _check_same_codecs(stream.source.codecs, tracks)
            await self._detach(stream)
            if self._streams.get(stream_id) is not stream:  # ended while its pull closed
                raise UnknownStream(stream_id)
        held = stream is not None and bool(stream.source.tracks)
        session = self._ingest_session(stream_id, "publisher")
        if stream is None or not held:
            stream = self._streams[stream_id] = _Stream(self._source(stream_id, tracks))
        stream.upstream = session
        session.feed(stream.source)
        for codec in tracks:
            session.receive(codec.kind, codec.preferences())
        try:
            answer = await session.answer(offer_sdp, _names(tracks))
        except BaseException:
            if held and stream.upstream is session:
                await self._detach(stream)
            else:
                await self._finish(session)
            raise
        if held:
            logger.info(
                "publisher %s takes %s over (%s), %d players and %d downstreams continue",
                session.id,
                stream_id,
                _label(tracks),
                stream.count("player"),
                stream.count("downstream"),
            )
        else:
            logger.info("publisher %s connecting to %s (%s)", session.id, stream_id, _label(tracks))
        return SessionDescription(session.id, answer)

    async def pull(self, stream_id: str, exchange: Exchange) -> str:
        """Ingest a stream from an upstream node; ``exchange`` trades our offer for its answer.

        A new stream is reserved (``has_stream``) from the start, with no codecs
        until the upstream's answer names them; if the pull fails, the id is
        released. On a held stream (or one with a live pull, which is closed
        first) the new pull feeds the players already there: its codecs must be
        the held ones (else ``CodecMismatch``), and if it fails the stream stays
        held.
        """
        self._check_open()
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = self._streams[stream_id] = _Stream(self._source(stream_id, ()))
        while stream.upstream is not None:
            if stream.upstream.role != "pull":
                raise StreamAlreadyPublished(stream_id)
            logger.info("replacing the pull of %s (%s)", stream_id, stream.upstream.id)
            await self._detach(stream)
        if self._streams.get(stream_id) is not stream:  # ended while the old pull closed
            raise UnknownStream(stream_id)
        held = bool(stream.source.tracks)
        session = self._ingest_session(stream_id, "pull")
        stream.upstream = session
        try:
            for kind in ("video", "audio"):
                session.receive(kind, codecs.preferences(kind))
            answer = await exchange(await session.offer())
            tracks = sdp.ingestable(sdp.parse(answer))
            if held:
                _check_same_codecs(stream.source.codecs, tracks)
            else:
                stream.source = self._source(stream_id, tracks)
            session.feed(stream.source)
            await session.accept(answer, _names(tracks))
        except BaseException:
            if stream.upstream is not session:  # replaced meanwhile, or the stream ended
                await self._close(session)
            elif held:
                await self._detach(stream)
            else:
                await self._end_stream(stream, f"its first pull {session.id} failed")
            raise
        if held:
            logger.info(
                "%s pulls again (%s), %d players and %d downstreams continue",
                stream_id,
                session.id,
                stream.count("player"),
                stream.count("downstream"),
            )
        else:
            logger.info("pulling %s (%s) as %s", stream_id, _label(tracks), session.id)
        return session.id

    async def play(
        self,
        stream_id: str,
        offer_sdp: str,
        *,
        downstream: bool = False,
        counted: Callable[[], None] | None = None,
    ) -> SessionDescription:
        """Add a player that sent an offer (WHEP); our answer out.

        ``downstream``: the session is a downstream node pulling the stream, served the
        same way but counted in ``downstreams``, not ``players``. ``counted`` is called
        at the moment the session starts to count in ``stats()`` (before negotiating).
        """
        lines = sdp.parse(offer_sdp)
        sdp.playable(lines, self._playable(stream_id).source.codecs)  # fail fast, before a turn
        role: PlayRole = "downstream" if downstream else "player"
        turn = await self._turn(stream_id, role)
        try:
            stream = self._playable(stream_id)  # it may have ended while we waited
            tracks = sdp.playable(lines, stream.source.codecs)
            session = self._player(stream_id, stream, role, tracks, turn, counted)
        except BaseException:
            turn.done()
            raise
        answer = await self._negotiate(
            session, session.answer(offer_sdp, _names(stream.source.codecs))
        )
        return SessionDescription(session.id, answer)

    async def offer_play(
        self, stream_id: str, counted: Callable[[], None] | None = None
    ) -> SessionDescription:
        """Add a player that expects our offer (Ant Media WebSocket play); ``counted`` as
        in ``play``."""
        self._playable(stream_id)
        turn = await self._turn(stream_id, "player")
        try:
            stream = self._playable(stream_id)
            session = self._player(stream_id, stream, "player", stream.source.codecs, turn, counted)
        except BaseException:
            turn.done()
            raise
        return SessionDescription(session.id, await self._negotiate(session, session.offer()))

    async def accept_answer(self, session_id: str, answer_sdp: str) -> None:
        """Take a player's answer to ``offer_play``'s offer."""
        session = self._session(session_id)
        if not isinstance(session, PlaySession) or session.pc.signalingState != "have-local-offer":
            raise BadSdp(f"session {session_id} is not waiting for an answer")
        sdp.parse(answer_sdp)
        wanted = _names(self._stream(session.stream_id).source.codecs)
        await self._negotiate(session, session.accept(answer_sdp, wanted))

    async def wait_connected(self, session_id: str) -> None:
        """Return once the session's connection is up (ICE and DTLS); ``UnknownSession`` if
        it ends first. Bounded by the session itself: one that does not connect within
        ``connect_timeout_s`` is ended."""
        session = self._session(session_id)
        while session.pc.connectionState != "connected":
            changed = asyncio.Event()
            session.pc.once("connectionstatechange", changed.set)
            await changed.wait()
            if session_id not in self._sessions or session.pc.connectionState == "closed":
                raise UnknownSession(session_id)

    async def add_ice_candidates(self, session_id: str, sdp_fragment: str) -> None:
        """Trickle ICE: add a peer's candidates (mDNS ``.local`` ones are ignored)."""
        await self._session(session_id).add_candidates(sdp_fragment)

    async def close_session(self, session_id: str) -> None:
        """End one session; ending a stream's ingest session (publisher or pull) ends the
        stream and its players too (only a pull lost by itself leaves the stream held)."""
        session = self._session(session_id)
        await self._finish(session)

    async def end_stream(self, stream_id: str) -> None:
        """End a stream here, held or not: its ingest, every player and downstream."""
        await self._end_stream(self._stream(stream_id), "asked to end it")

    def has_stream(self, stream_id: str) -> bool:
        return stream_id in self._streams

    def stream_info(self, stream_id: str) -> StreamInfo:
        """Codec, picture size and bitrates of a stream here (``UnknownStream`` if not here)."""
        tracks = self._playable(stream_id).source.tracks
        video, audio = tracks.get("video"), tracks.get("audio")
        keyframe = video.keyframe if video else None
        size = picture_size(video.codec.mime_type, keyframe) if video and keyframe else None
        width, height = size or (0, 0)
        return StreamInfo(
            video_codec=video.codec.mime_type.split("/")[1] if video else "",
            width=width,
            height=height,
            video_bitrate_bps=video.bitrate_bps() if video else 0,
            audio_bitrate_bps=audio.bitrate_bps() if audio else 0,
        )

    def has_session(self, session_id: str) -> bool:
        return session_id in self._sessions

    def session_of(self, session_id: str) -> tuple[str, Role]:
        """The stream and role of a session, so that signalling can check who addresses it."""
        session = self._session(session_id)
        return session.stream_id, session.role

    def stream_codecs(self, stream_id: str) -> tuple[str, ...]:
        return _names(self._stream(stream_id).source.codecs)

    def receiving(self, stream_id: str) -> bool:
        """Whether media of the stream arrived here in the last two seconds.

        A pull that hears only its upstream's keepalives (a held upstream) is
        not receiving; the control plane asks before ending a stream the
        registry calls orphaned, since a main origin cut off from the registry
        may still be sending.
        """
        stream = self._streams.get(stream_id)
        return stream is not None and any(
            track.bitrate_bps() > 0 for track in stream.source.tracks.values()
        )

    def players(self, stream_id: str) -> int:
        """Players of the stream here (0 if it is not here)."""
        stream = self._streams.get(stream_id)
        return stream.count("player") if stream else 0

    def downstreams(self, stream_id: str) -> int:
        """Downstream nodes pulling the stream from here (0 if it is not here)."""
        stream = self._streams.get(stream_id)
        return stream.count("downstream") if stream else 0

    def stats(self) -> MediaStats:
        self._meter.sample()
        roles = [s.role for s in self._sessions.values()]
        return MediaStats(
            publishers=roles.count("publisher"),
            players=roles.count("player"),
            pulls=roles.count("pull"),
            downstreams=roles.count("downstream"),
            bitrate_in_kbps=round(self._meter.kbps_in, 1),
            bitrate_out_kbps=round(self._meter.kbps_out, 1),
            players_per_stream=tuple(
                (stream_id, stream.count("player")) for stream_id, stream in self._streams.items()
            ),
            loop_busy=round(self._load.share, 3),
            fanout_busy=round(self._load.fanout, 3),
            forwarding_busy=round(self._load.forwarding, 3),
            ingest_backlog=self._load.backlog,
        )

    async def close(self) -> None:
        """End every stream and session and wait for all of it; harmless twice."""
        self._closed = True
        self._load.stop()
        for stream in list(self._streams.values()):
            await self._end_stream(stream, "the media engine closed")
        for session in list(self._sessions.values()):
            await self._close(session)
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # sessions

    def _ingest_session(self, stream_id: str, role: Role) -> IngestSession:
        session = IngestSession(
            _new_id(), stream_id, role, self._config, self._ended, self._flowing
        )
        self._sessions[session.id] = session
        return session

    def _source(self, stream_id: str, tracks: tuple[codecs.TrackCodec, ...]) -> Source:
        return Source(stream_id, tracks, self._config.keyframe_request_interval_s, self._meter)

    async def _turn(self, stream_id: str, role: PlayRole) -> Turn:
        """A new player's turn to handshake; ``Overloaded`` if forwarding leaves no time
        for it, or its turn does not come within ``handshake_wait_s``.

        A downstream node is let in even then (first in the queue): its one session
        carries a whole subtree of players, often failing over to us, and refusing it
        would drop them all, where taking it costs one player's share, which shedding
        takes back from this node's newest players if the loop stays busy.
        """
        self._check_open()
        self._load.start()  # from the first player on (the event loop runs here)
        if self._load.busy and role != "downstream":
            reason = self._overload()
        else:
            try:
                turn = await self._handshakes.admit(first=role == "downstream")
            except Overloaded as exc:
                reason = exc.reason
            else:
                self._check_open()
                return turn
        self._refusals.refused(role, stream_id, reason)
        raise Overloaded(reason)

    def _player(
        self,
        stream_id: str,
        stream: _Stream,
        role: PlayRole,
        tracks: tuple[codecs.TrackCodec, ...],
        turn: Turn,
        counted: Callable[[], None] | None,
    ) -> PlaySession:
        session = PlaySession(
            _new_id(), stream_id, role, self._config, self._ended, stream.source, turn.done
        )
        session.send(tracks)
        stream.players[session.id] = session
        self._sessions[session.id] = session
        if counted is not None:
            counted()
        count = stream.count(role)
        logger.info(
            "%s %s joined %s (%s), %d %ss here",
            role,
            session.id,
            stream_id,
            _label(tracks),
            count,
            role,
        )
        if role == "player":
            self._listener.players_changed(stream_id, count)
        return session

    async def _negotiate(self, session: Session, step: Awaitable[T]) -> T:
        """Await one signalling step; if it fails, the half-made session goes."""
        try:
            return await step
        except BaseException:
            await self._finish(session)
            raise

    def _flowing(self, session: IngestSession) -> None:
        tracks = session.source.codecs if session.source else ()
        logger.info(
            "stream %s is live (%s) via %s", session.stream_id, _label(tracks), session.role
        )
        self._listener.stream_started(session.stream_id, _names(tracks))

    def _backlog(self) -> int:
        """Bytes unread in the fullest ingest socket of this node's streams."""
        upstreams = (stream.upstream for stream in self._streams.values())
        return max((upstream.queued() for upstream in upstreams if upstream), default=0)

    def _busy(self, seconds: int) -> None:
        """Another second with the event loop at its limit: past ``SHED_AFTER`` of them,
        end the newest players (the sessions dict keeps the order they came in)."""
        if seconds < SHED_AFTER:
            return
        players = [s for s in self._sessions.values() if s.role == "player"]
        shed = players[-max(1, math.ceil(len(players) * SHED_SHARE)) :] if players else []
        if shed:
            logger.warning(
                "shedding the newest %d of %d players: %s, %d s in a row",
                len(shed),
                len(players),
                self._overload(),
                seconds,
            )
        for session in shed:
            session.end("shed: the node is overloaded")

    def _overload(self) -> str:
        """Why the node is at its limit, in plain words."""
        if self._load.behind:
            return f"its media is late, {self._load.backlog >> 10} KiB of ingest wait unread"
        return (
            f"forwarding keeps it {self._load.forwarding:.0%} busy (its media loop"
            f" {self._load.share:.0%}, its fan-out threads {self._load.fanout:.0%}),"
            f" the limit is {self._load.limit:.0%}"
        )

    def _ended(self, session: Session) -> None:
        """A peer left, its connection failed or went silent: finish it in the background."""
        task = asyncio.ensure_future(self._finish(session, lost=True))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _finish(self, session: Session, *, lost: bool = False) -> None:
        """End a session; a stream's ingest session takes the stream with it, except a
        pull ``lost`` by itself (not closed on request), whose stream is held."""
        if session.id not in self._sessions:
            return
        stream = self._streams.get(session.stream_id)
        if stream is None or stream.upstream is not session:
            await self._close(session)
        elif lost and session.role == "pull" and stream.source.tracks and not self._closed:
            await self._detach(stream)
            logger.info(
                "lost the upstream of %s (pull %s: %s); holding %d players and %d downstreams",
                session.stream_id,
                session.id,
                session.end_reason,
                stream.count("player"),
                stream.count("downstream"),
            )
            self._listener.upstream_lost(session.stream_id, session.closed_by_peer)
        else:
            why = f": {session.end_reason}" if session.end_reason else ""
            await self._end_stream(stream, f"{session.role} {session.id} gone{why}")

    async def _detach(self, stream: _Stream) -> None:
        """Close a stream's ingest session, keeping the stream, its source and players."""
        upstream, stream.upstream = stream.upstream, None
        if upstream is not None:
            await self._close(upstream)

    async def _end_stream(self, stream: _Stream, reason: str) -> None:
        """Close the stream's players, then its ingest; ``stream_ended`` last."""
        stream_id = stream.source.stream_id
        if self._streams.get(stream_id) is not stream:
            return
        del self._streams[stream_id]
        stream.source.close()
        for player in list(stream.players.values()):
            await self._close(player)
        await self._detach(stream)
        logger.info("stream %s ended (%s)", stream_id, reason)
        self._listener.stream_ended(stream_id)

    async def _close(self, session: Session) -> None:
        """Close one session and report it; a player leaves its stream's count."""
        if self._sessions.pop(session.id, None) is None:
            return
        stream = self._streams.get(session.stream_id)
        if stream is not None and stream.players.pop(session.id, None) is not None:
            count = stream.count(session.role)
            logger.info(
                "%s %s left %s (%s), %d %ss here",
                session.role,
                session.id,
                session.stream_id,
                session.end_reason or "closed on request",
                count,
                session.role,
            )
            if session.role == "player":
                self._listener.players_changed(session.stream_id, count)
        await session.close()
        self._listener.session_ended(session.id)

    def _stream(self, stream_id: str) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise UnknownStream(stream_id)
        return stream

    def _playable(self, stream_id: str) -> _Stream:
        """A stream players can join: known, and its codecs known (a pull has its answer)."""
        stream = self._stream(stream_id)
        if not stream.source.tracks:
            raise UnknownStream(stream_id)
        return stream

    def _session(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise UnknownSession(session_id)
        return session

    def _check_open(self) -> None:
        if self._closed:
            raise MediaError("the media engine is closed")


def _check_same_codecs(
    held: tuple[codecs.TrackCodec, ...], tracks: tuple[codecs.TrackCodec, ...]
) -> None:
    """A held stream's players negotiated its codecs: a new upstream must send exactly those."""
    if {c.kind: c for c in held} != {c.kind: c for c in tracks}:
        raise CodecMismatch(_names(held), _names(tracks))


def _names(tracks: tuple[codecs.TrackCodec, ...]) -> tuple[str, ...]:
    return tuple(codec.mime_type for codec in tracks)


def _label(tracks: tuple[codecs.TrackCodec, ...]) -> str:
    """Codecs for people: ``VP8+opus``."""
    return "+".join(codec.mime_type.split("/")[1] for codec in tracks)


def _new_id() -> str:
    return uuid.uuid4().hex[:12]
