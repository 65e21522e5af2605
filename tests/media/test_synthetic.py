"""The synthetic source: decodable, stamped, at the configured keyframe interval."""

from __future__ import annotations

from typing import Any

import av
import pytest

from media import codecs
from media.contrib import stamp
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack, VideoSettings

DECODERS = {"video/VP8": "vp8", "video/H264": "h264"}


@pytest.mark.parametrize(
    "mime_type",
    ["video/VP8", "video/H264"],
    ids=["stamped VP8 frames decode and read back", "stamped H.264 frames decode and read back"],
)
async def test_stamped_frames_decode_and_carry_their_sequence(mime_type: str) -> None:
    frames: list[bytes] = []
    track = SyntheticVideoTrack(
        VideoSettings(mime_type=mime_type, fps=60, keyframe_interval_s=0.25), on_frame=frames.append
    )
    for _ in range(20):
        await track.recv()

    decoder: Any = av.CodecContext.create(DECODERS[mime_type], "r")  # a decoder of that kind
    pictures = [p for frame in frames for p in decoder.decode(av.Packet(frame))]
    stamps = [stamp.read(frame) for frame in frames]
    keyframes = [n for n, frame in enumerate(frames) if codecs.is_keyframe(mime_type, frame)]

    assert len(pictures) == 20 and (pictures[0].width, pictures[0].height) == (640, 360)
    assert [s.seq if s else None for s in stamps] == list(range(1, 21))
    assert keyframes == [0, 15]


async def test_a_keyframe_request_makes_the_next_frame_a_keyframe() -> None:
    frames: list[bytes] = []
    track = SyntheticVideoTrack(
        VideoSettings(fps=60, keyframe_interval_s=10), on_frame=frames.append
    )
    await track.recv()
    await track.recv()
    track.request_keyframe()
    await track.recv()

    assert [codecs.is_keyframe("video/VP8", f) for f in frames] == [True, False, True]


async def test_audio_is_twenty_millisecond_opus_frames() -> None:
    frames: list[bytes] = []
    track = SyntheticAudioTrack(on_frame=frames.append)
    packets = [await track.recv() for _ in range(3)]

    first = packets[0].pts
    assert first is not None
    assert [p.pts for p in packets[1:]] == [first + 960, first + 1920]
    assert all(frames)
