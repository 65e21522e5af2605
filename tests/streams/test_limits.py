"""A node at one of its limits refuses new work with 503 and says which limit, touching nothing.

Real parts: the embedded registry, the media engine, aiortc peers on 127.0.0.1.
Only the measured load is chosen by the test, since a CPU reading cannot be
made to order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cluster.errors import Overloaded
from cluster.registry import Registry
from cluster.registry.migrate import migrate
from cluster.settings import Settings, load_settings
from cluster.streams.access import StreamAccess
from cluster.streams.events import StreamEvents
from cluster.streams.local import LocalStreams
from cluster.streams.pulls import Pulls
from cluster.types import NodeLoad, StreamId
from media.config import MediaConfig
from media.contrib.client import Player, Publisher
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack
from media.engine import MediaEngine
from media.types import Exchange, SessionDescription
from tests.support.waits import WAIT

StreamsFactory = Callable[..., LocalStreams]
IDLE = NodeLoad()


def answering(create: Callable[[str], Awaitable[SessionDescription]]) -> Exchange:
    """An in-process exchange: the offer goes straight to ``LocalStreams``, the answer back."""

    async def exchange(offer: str) -> str:
        return (await create(offer)).sdp

    return exchange


@pytest.fixture
async def make_streams(tmp_path: Path) -> AsyncIterator[StreamsFactory]:
    config = tmp_path / "red5.properties"
    config.write_text("server.name=limited\nserver.dataDir=var\n", encoding="utf-8")
    base = load_settings(config, {})
    base.data_dir.mkdir()
    await migrate(base.registry_url)
    registry = await Registry.connect(base.registry_url)
    made: list[LocalStreams] = []

    def make(load: NodeLoad = IDLE, **limits: Any) -> LocalStreams:
        settings: Settings = replace(base, **limits)
        events = StreamEvents()
        engine = MediaEngine(MediaConfig(candidate_addresses=("127.0.0.1",)), events)
        pulls = Pulls(registry, lambda: settings, engine)
        access = StreamAccess(registry, lambda: settings)
        streams = LocalStreams(registry, lambda: settings, engine, pulls, access, lambda: load)
        events.subscribe(streams)
        made.append(streams)
        return streams

    yield make
    for streams in made:
        await streams.close()
    await registry.close()


async def test_over_the_cpu_limit_a_publisher_is_refused_before_any_claim(
    make_streams: StreamsFactory,
) -> None:
    streams = make_streams(NodeLoad(cpu=0.9), cpu_limit=50)
    with pytest.raises(Overloaded, match=r"CPU at 90% is above server.cpu_limit \(50%\)"):
        await streams.publish("LiveApp", "s1", "v=0\r\n")
    assert await streams._registry.stream(StreamId("s1")) is None


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        pytest.param({"max_players": 1}, "its limit of 1 players", id="player limit"),
        pytest.param({"max_bitrate_kbps": 1}, "server.maxBitrateKbps", id="bitrate limit"),
    ],
)
async def test_at_a_limit_a_further_player_is_refused_and_the_first_keeps_playing(
    make_streams: StreamsFactory, limits: dict[str, int], message: str
) -> None:
    streams = make_streams(**limits)
    publisher = Publisher([SyntheticVideoTrack(), SyntheticAudioTrack()])
    first, second = Player(), Player()
    play = answering(lambda offer: streams.play("LiveApp", "s1", offer))
    try:
        await publisher.start(answering(lambda offer: streams.publish("LiveApp", "s1", offer)))
        await first.play(play)
        async with asyncio.timeout(WAIT):
            await first.wait_for_frames("video", 30)
        with pytest.raises(Overloaded, match=message):
            await second.play(play)
        frames = first.tracks["video"].frames
        async with asyncio.timeout(WAIT):
            await first.wait_for_frames("video", frames + 10)
    finally:
        for peer in (second, first, publisher):
            await peer.close()
