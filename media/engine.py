"""The media engine: the media plane's one entry point for the control plane.

::

    engine = MediaEngine(MediaConfig(candidate_addresses=("203.0.113.7",)), listener)
    answer = await engine.publish("s1", offer_sdp)          # WHIP
    answer = await engine.play("s1", offer_sdp)             # WHEP (client offer)
    offer = await engine.offer_play("s1")                   # Ant Media WebSocket play
    await engine.accept_answer(offer.session_id, answer_sdp)
    session_id = await engine.pull("s1", exchange)          # from an upstream node
    await engine.add_ice_candidates(session_id, fragment)   # trickle (PATCH)
    await engine.close_session(session_id)                  # DELETE
    await engine.close()

Publishing and pulling are the same thing to the engine: an ingest session that
feeds a stream's ``Source``. Viewers read from the source. Every session is
owned here and closed here; the ``StreamListener`` hears about streams starting
and ending, sessions ending and viewer counts changing. Errors are the named
ones of ``media.errors``; nothing here knows about HTTP or the cluster.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from media import aiortc_seam, codecs, sdp
from media.config import MediaConfig
from media.errors import (
    BadSdp,
    MediaError,
    StreamAlreadyPublished,
    UnknownSession,
    UnknownStream,
)
from media.meter import Meter
from media.sessions import IngestSession, Role, Session, ViewerSession
from media.source import Source
from media.types import Exchange, MediaStats, SessionDescription, StreamListener

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Stream:
    """One stream on this node: its source, who feeds it and who watches it."""

    source: Source
    upstream: IngestSession
    viewers: dict[str, ViewerSession] = field(default_factory=dict)


class MediaEngine:
    """Ingests WebRTC streams and relays their encoded media to WebRTC viewers."""

    def __init__(self, config: MediaConfig, listener: StreamListener) -> None:
        aiortc_seam.check()
        self._config = config
        self._listener = listener
        self._streams: dict[str, _Stream] = {}
        self._sessions: dict[str, Session] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._meter = Meter()
        self._closed = False

    async def publish(self, stream_id: str, offer_sdp: str) -> SessionDescription:
        """Ingest a publisher (WHIP): its offer in, our answer out."""
        tracks = sdp.ingestable(sdp.parse(offer_sdp))
        session = self._ingest(stream_id, "publisher", tracks)
        for codec in tracks:
            session.receive(codec.kind, codec.preferences())
        answer = await self._negotiate(session, session.answer(offer_sdp, _names(tracks)))
        logger.info("publisher %s connecting to %s (%s)", session.id, stream_id, _label(tracks))
        return SessionDescription(session.id, answer)

    async def pull(self, stream_id: str, exchange: Exchange) -> str:
        """Ingest a stream from an upstream node; ``exchange`` trades our offer for its answer.

        The stream is reserved (``has_stream``) from the start, with no codecs
        until the upstream's answer names them.
        """
        session = self._ingest(stream_id, "pull", ())
        for kind in ("video", "audio"):
            session.receive(kind, codecs.preferences(kind))
        offer = await self._negotiate(session, session.offer())
        answer = await self._negotiate(session, exchange(offer))
        tracks = await self._negotiate(session, _ingestable_answer(answer))
        stream = self._streams[stream_id]
        stream.source.close()
        stream.source = Source(
            stream_id, tracks, self._config.keyframe_request_interval_s, self._meter
        )
        session.feed(stream.source)
        await self._negotiate(session, session.accept(answer, _names(tracks)))
        logger.info("pulling %s (%s) as %s", stream_id, _label(tracks), session.id)
        return session.id

    async def play(self, stream_id: str, offer_sdp: str) -> SessionDescription:
        """Add a viewer that sent an offer (WHEP); our answer out."""
        lines = sdp.parse(offer_sdp)
        stream = self._playable(stream_id)
        session = self._viewer(stream_id, stream, sdp.playable(lines, stream.source.codecs))
        answer = await self._negotiate(
            session, session.answer(offer_sdp, _names(stream.source.codecs))
        )
        return SessionDescription(session.id, answer)

    async def offer_play(self, stream_id: str) -> SessionDescription:
        """Add a viewer that expects our offer (Ant Media WebSocket play)."""
        stream = self._playable(stream_id)
        session = self._viewer(stream_id, stream, stream.source.codecs)
        return SessionDescription(session.id, await self._negotiate(session, session.offer()))

    async def accept_answer(self, session_id: str, answer_sdp: str) -> None:
        """Take a viewer's answer to ``offer_play``'s offer."""
        session = self._session(session_id)
        if (
            not isinstance(session, ViewerSession)
            or session.pc.signalingState != "have-local-offer"
        ):
            raise BadSdp(f"session {session_id} is not waiting for an answer")
        sdp.parse(answer_sdp)
        wanted = _names(self._stream(session.stream_id).source.codecs)
        await self._negotiate(session, session.accept(answer_sdp, wanted))

    async def add_ice_candidates(self, session_id: str, sdp_fragment: str) -> None:
        """Trickle ICE: add a peer's candidates (mDNS ``.local`` ones are ignored)."""
        await self._session(session_id).add_candidates(sdp_fragment)

    async def close_session(self, session_id: str) -> None:
        """End one session; ending a stream's ingest session ends its viewers too."""
        session = self._session(session_id)
        await self._finish(session)

    def has_stream(self, stream_id: str) -> bool:
        return stream_id in self._streams

    def stream_codecs(self, stream_id: str) -> tuple[str, ...]:
        return _names(self._stream(stream_id).source.codecs)

    def stats(self) -> MediaStats:
        self._meter.sample()
        roles = [s.role for s in self._sessions.values()]
        return MediaStats(
            publishers=roles.count("publisher"),
            viewers=roles.count("viewer"),
            pulls=roles.count("pull"),
            bitrate_in_kbps=round(self._meter.kbps_in, 1),
            bitrate_out_kbps=round(self._meter.kbps_out, 1),
            viewers_per_stream=tuple(
                (stream_id, len(stream.viewers)) for stream_id, stream in self._streams.items()
            ),
        )

    async def close(self) -> None:
        """End every session and wait for all of it; harmless twice."""
        self._closed = True
        for session in list(self._sessions.values()):
            await self._finish(session)
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # sessions

    def _ingest(
        self, stream_id: str, role: Role, tracks: tuple[codecs.TrackCodec, ...]
    ) -> IngestSession:
        self._check_open()
        if stream_id in self._streams:
            raise StreamAlreadyPublished(stream_id)
        session = IngestSession(
            _new_id(), stream_id, role, self._config, self._ended, self._flowing
        )
        source = Source(stream_id, tracks, self._config.keyframe_request_interval_s, self._meter)
        self._streams[stream_id] = _Stream(source, session)
        self._sessions[session.id] = session
        session.feed(source)
        return session

    def _viewer(
        self, stream_id: str, stream: _Stream, tracks: tuple[codecs.TrackCodec, ...]
    ) -> ViewerSession:
        self._check_open()
        session = ViewerSession(_new_id(), stream_id, self._config, self._ended, stream.source)
        session.send(tracks)
        stream.viewers[session.id] = session
        self._sessions[session.id] = session
        viewers = len(stream.viewers)
        logger.info(
            "viewer %s joined %s (%s), %d viewers", session.id, stream_id, _label(tracks), viewers
        )
        self._listener.viewers_changed(stream_id, viewers)
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

    def _ended(self, session: Session) -> None:
        """A peer left or its connection failed: close the session in the background."""
        task = asyncio.ensure_future(self._finish(session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _finish(self, session: Session) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        stream = self._streams.get(session.stream_id)
        if stream is not None and stream.upstream is session:
            del self._streams[session.stream_id]
            stream.source.close()
            for viewer in list(stream.viewers.values()):
                await self._finish(viewer)
        elif stream is not None and stream.viewers.pop(session.id, None) is not None:
            viewers = len(stream.viewers)
            logger.info("viewer %s left %s, %d viewers", session.id, session.stream_id, viewers)
            self._listener.viewers_changed(session.stream_id, viewers)
        await session.close()
        self._listener.session_ended(session.id)
        if stream is not None and stream.upstream is session:
            logger.info("stream %s ended (%s %s gone)", session.stream_id, session.role, session.id)
            self._listener.stream_ended(session.stream_id)

    def _stream(self, stream_id: str) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise UnknownStream(stream_id)
        return stream

    def _playable(self, stream_id: str) -> _Stream:
        """A stream viewers can join: known, and its codecs known (a pull has its answer)."""
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


async def _ingestable_answer(answer_sdp: str) -> tuple[codecs.TrackCodec, ...]:
    return sdp.ingestable(sdp.parse(answer_sdp))


def _names(tracks: tuple[codecs.TrackCodec, ...]) -> tuple[str, ...]:
    return tuple(codec.mime_type for codec in tracks)


def _label(tracks: tuple[codecs.TrackCodec, ...]) -> str:
    """Codecs for people: ``VP8+opus``."""
    return "+".join(codec.mime_type.split("/")[1] for codec in tracks)


def _new_id() -> str:
    return uuid.uuid4().hex[:12]
