"""The per-stream fan-out on its own: GOP cache, bounded outlets, coalesced requests."""

from __future__ import annotations

import asyncio

from media import codecs
from media.keyframes import KeyframeRequests
from media.meter import Meter
from media.source import TrackSource

KEY, DELTA = b"\x00vp8 keyframe", b"\x01vp8 delta"  # VP8: bit 0 of byte 0 clear = keyframe


def video_track(requests: list[str], limit_gop: int = 600, interval: float = 60.0) -> TrackSource:
    codec = codecs.match("video", codecs.relayable("video")[0])
    assert codec is not None and codec.mime_type == "video/VP8"
    keyframes = KeyframeRequests(interval, lambda: requests.append("pli"))
    return TrackSource(codec, keyframes, Meter(), gop_limit=limit_gop)


def push_gop(track: TrackSource, deltas: int, start: int = 0) -> None:
    track.push(KEY, start * 3000, epoch=1)
    for n in range(1, deltas + 1):
        track.push(DELTA, (start + n) * 3000, epoch=1)


async def test_a_player_that_stops_reading_drops_to_the_next_keyframe_alone() -> None:
    requests: list[str] = []
    track = video_track(requests)
    stalled, reading = track.subscribe(limit=10), track.subscribe(limit=10)
    push_gop(track, deltas=0)
    received = await reading.take()

    for n in range(1, 30):
        track.push(DELTA, n * 3000, epoch=1)
        received += await reading.take()

    assert len(received) == 30, "the reading player got every frame"
    assert stalled.overflows == 1 and stalled.waiting_for_keyframe
    push_gop(track, deltas=2, start=30)
    frames = await stalled.take()
    assert [f.keyframe for f in frames] == [True, False, False]
    assert requests == ["pli"], "one request for both joins and the overflow, then quiet"


async def test_a_joining_player_starts_at_the_cached_keyframe_when_it_fits() -> None:
    track = video_track([])
    push_gop(track, deltas=4)

    fits = await track.subscribe(limit=10).take()
    too_small = track.subscribe(limit=3)

    assert [f.keyframe for f in fits] == [True, False, False, False, False]
    assert too_small.waiting_for_keyframe


async def test_frames_are_packetised_once_for_every_player() -> None:
    track = video_track([])
    first, second = track.subscribe(limit=10), track.subscribe(limit=10)
    push_gop(track, deltas=1)

    one, two = await first.take(), await second.take()
    assert [f.payloads for f in one] == [f.payloads for f in two]
    assert all(a is b for a, b in zip(one, two, strict=True))


async def test_keyframe_requests_are_coalesced_but_never_lost() -> None:
    sent: list[float] = []
    loop = asyncio.get_running_loop()
    requests = KeyframeRequests(0.1, lambda: sent.append(loop.time()))

    for _ in range(10):
        requests.request()
    assert len(sent) == 1
    await asyncio.sleep(0.3)
    requests.close()

    assert len(sent) == 2, "the burst became one request now and one at the interval's end"
    assert sent[1] - sent[0] >= 0.09


async def test_a_new_upstream_starts_every_player_at_its_first_keyframe() -> None:
    requests: list[str] = []
    track = video_track(requests, interval=0.01)
    player = track.subscribe(limit=10)
    push_gop(track, deltas=2)
    assert len(await player.take()) == 3
    await asyncio.sleep(0.02)  # past the join's request
    requests.clear()

    track.push(DELTA, 0, epoch=2)  # a re-pull whose first frame cannot start a decoder
    track.push(DELTA, 3000, epoch=2)
    assert player.waiting_for_keyframe and requests == ["pli"], "asked at once"
    late = track.subscribe(limit=10)
    track.push(KEY, 6000, epoch=2)
    track.push(DELTA, 9000, epoch=2)

    for outlet in (player, late):
        frames = await outlet.take()
        assert [(f.keyframe, f.epoch) for f in frames] == [(True, 2), (False, 2)]
