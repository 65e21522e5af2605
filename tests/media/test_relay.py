"""Relay, never transcode: what players receive is what the publisher sent."""

from __future__ import annotations

import asyncio
import time

import pytest

from media import codecs
from media.contrib import stamp
from tests.media.conftest import EngineFactory, Publish, Watch


def contiguous_run(sent: list[bytes], received: list[bytes]) -> list[bytes]:
    """The run of ``sent`` that starts where ``received`` starts, as long as it."""
    start = sent.index(received[0])
    return sent[start : start + len(received)]


@pytest.mark.parametrize(
    "mime_type",
    ["video/VP8", "video/H264"],
    ids=[
        "VP8 frames reach every player byte for byte",
        "H.264 frames reach every player byte for byte",
    ],
)
async def test_every_player_receives_the_published_frames(
    make_engine: EngineFactory, publish: Publish, watch: Watch, mime_type: str
) -> None:
    engine = make_engine()
    published = await publish(engine, mime_type=mime_type)
    watchers = [await watch(engine, keep_frames=True) for _ in range(3)]

    for watching in watchers:
        video = await watching.frames("video", 40)
        audio = await watching.frames("audio", 25)
        assert codecs.is_keyframe(mime_type, video.kept[0])
        assert video.kept == contiguous_run(published.sent, video.kept)
        assert audio.kept == contiguous_run(published.sent_audio, audio.kept)
    assert engine.stream_codecs("s1") == (mime_type, "audio/opus")


async def test_late_player_starts_at_the_cached_keyframe(
    make_engine: EngineFactory, publish: Publish, watch: Watch
) -> None:
    engine = make_engine()
    published = await publish(engine, keyframe_interval_s=10)
    first = await watch(engine)
    await first.frames("video", 30)

    late = await watch(engine, keep_frames=True)
    video = await late.frames("video", 1)

    start = stamp.read(video.kept[0])
    newest = stamp.read(published.sent[-1])
    assert start is not None and newest is not None
    assert codecs.is_keyframe("video/VP8", video.kept[0])
    assert start.seq < newest.seq - 10, "a late player starts from the cache, not the live edge"


async def test_late_player_gets_a_keyframe_within_a_second_despite_a_long_interval(
    make_engine: EngineFactory, publish: Publish, watch: Watch
) -> None:
    engine = make_engine(play_queue_limit=30)
    published = await publish(engine, keyframe_interval_s=10)
    first = await watch(engine)
    await first.frames("video", 60)  # the cached GOP has outgrown a player's queue
    keyframes_before = published.video.keyframes

    joined = time.monotonic()
    late = await watch(engine)
    video = await late.frames("video", 1)

    assert video.first_keyframe_at is not None
    assert video.first_keyframe_at - joined < 1.0
    assert published.video.keyframes > keyframes_before, "the keyframe was asked of the publisher"


async def test_many_keyframe_requests_reach_the_publisher_coalesced(
    make_engine: EngineFactory, publish: Publish, watch: Watch
) -> None:
    engine = make_engine(keyframe_request_interval_s=0.25)
    published = await publish(engine, keyframe_interval_s=10)
    before = published.video.keyframes

    started = time.monotonic()
    watchers = await asyncio.gather(*(watch(engine) for _ in range(6)))
    for watching in watchers:
        await watching.frames("video", 1)
    elapsed = time.monotonic() - started

    asked = published.video.keyframes - before
    assert 1 <= asked <= 1 + elapsed / 0.25 + 1
