"""Fixtures for the media tests: a real engine on 127.0.0.1 and real aiortc peers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from media import codecs, ice
from media.config import MediaConfig
from media.contrib.client import Player, Publisher, TrackReport
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack, VideoSettings
from media.engine import MediaEngine
from media.types import StreamListener
from tests.support.waits import WAIT


@dataclass
class Events:
    """The control plane's side of ``StreamListener``: records every event in order."""

    history: list[tuple[object, ...]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def stream_started(self, stream_id: str, codecs: tuple[str, ...]) -> None:
        self._add("stream_started", stream_id, codecs)

    def stream_ended(self, stream_id: str) -> None:
        self._add("stream_ended", stream_id)

    def upstream_lost(self, stream_id: str, closed_by_upstream: bool) -> None:
        self._add("upstream_lost", stream_id)

    def session_ended(self, session_id: str) -> None:
        self._add("session_ended", session_id)

    def players_changed(self, stream_id: str, players: int) -> None:
        self._add("players_changed", stream_id, players)

    async def wait_for(self, *event: object) -> None:
        async with asyncio.timeout(WAIT):
            while event not in self.history:
                self.changed.clear()
                await self.changed.wait()

    def _add(self, *event: object) -> None:
        self.history.append(event)
        self.changed.set()


@pytest.fixture
def events() -> Events:
    return Events()


EngineFactory = Callable[..., MediaEngine]


@pytest.fixture
async def make_engine(events: Events) -> AsyncIterator[EngineFactory]:
    """Builds engines on 127.0.0.1 with no ICE servers; all closed at teardown."""
    engines: list[MediaEngine] = []

    def make(listener: StreamListener = events, **settings: Any) -> MediaEngine:
        config = MediaConfig(candidate_addresses=("127.0.0.1",), **settings)
        engine = MediaEngine(config, listener)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.close()


@pytest.fixture
async def engine(make_engine: EngineFactory) -> MediaEngine:
    return make_engine()


@dataclass
class Published:
    publisher: Publisher
    video: SyntheticVideoTrack
    sent: list[bytes]
    sent_audio: list[bytes]
    session_id: str


@dataclass
class Watching:
    player: Player
    session_id: str

    async def frames(self, kind: str, count: int) -> TrackReport:
        return await asyncio.wait_for(self.player.wait_for_frames(kind, count), WAIT)


Publish = Callable[..., Awaitable[Published]]
Watch = Callable[..., Awaitable[Watching]]


@pytest.fixture
async def publish() -> AsyncIterator[Publish]:
    """Publishes a synthetic stream (video + Opus) to an engine; closed at teardown."""
    publishers: list[Publisher] = []

    async def start(
        engine: MediaEngine,
        stream_id: str = "s1",
        mime_type: str = "video/VP8",
        keyframe_interval_s: float = 1.0,
    ) -> Published:
        sent: list[bytes] = []
        video = SyntheticVideoTrack(
            VideoSettings(mime_type=mime_type, keyframe_interval_s=keyframe_interval_s),
            on_frame=sent.append,
        )
        sent_audio: list[bytes] = []
        publisher = Publisher([video, SyntheticAudioTrack(on_frame=sent_audio.append)])
        publishers.append(publisher)
        session_ids: list[str] = []

        async def exchange(offer: str) -> str:
            answer = await engine.publish(stream_id, offer)
            session_ids.append(answer.session_id)
            return answer.sdp

        await asyncio.wait_for(publisher.start(exchange), WAIT)
        return Published(publisher, video, sent, sent_audio, session_ids[0])

    yield start
    for publisher in publishers:
        await publisher.close()


@pytest.fixture
async def watch() -> AsyncIterator[Watch]:
    """Plays a stream from an engine with a client offer (WHEP), as a player or a downstream
    (a downstream node's pull); closed at teardown."""
    players: list[Player] = []

    async def start(
        engine: MediaEngine, stream_id: str = "s1", downstream: bool = False, **options: Any
    ) -> Watching:
        player = Player(**options)
        players.append(player)
        session_ids: list[str] = []

        async def exchange(offer: str) -> str:
            answer = await engine.play(stream_id, offer, downstream=downstream)
            session_ids.append(answer.session_id)
            return answer.sdp

        await asyncio.wait_for(player.play(exchange), WAIT)
        return Watching(player, session_ids[0])

    yield start
    for player in players:
        await player.close()


OfferFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def offer() -> AsyncIterator[OfferFactory]:
    """SDP offers from real aiortc peers, for signalling tests that need no media."""
    pcs: list[RTCPeerConnection] = []

    async def make(
        direction: str = "recvonly", video: str | None = "video/VP8", audio: bool = True
    ) -> str:
        pc = ice.peer_connection(())
        pcs.append(pc)
        wanted = [(kind, mime) for kind, mime in (("video", video), ("audio", "audio/opus"))]
        for kind, mime in wanted:
            if mime is None or (kind == "audio" and not audio):
                continue
            transceiver = pc.addTransceiver(kind, direction=direction)
            transceiver.setCodecPreferences(
                [c for c in codecs.preferences(kind) if c.mimeType in (mime, codecs.RTX)]
            )
        return await ice.describe(pc, "offer", ("127.0.0.1",))

    yield make
    for pc in pcs:
        await pc.close()
