"""A synthetic publisher's media: a moving test pattern and a tone, encoded with PyAV.

The tracks hand aiortc *encoded* packets (``av.Packet``), so aiortc only
packetises them: we choose the codec, bitrate and keyframe interval, we honour
keyframe requests (``request_keyframe``, wired to the sender's PLI/FIR by
``media.contrib.client``), and every frame carries a ``media.contrib.stamp`` (sequence number
and send time) that any receiver reads back from the encoded bytes. ``on_frame``
sees each frame exactly as it goes to aiortc, which is what a relay must deliver.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

import av
from aiortc.mediastreams import MediaStreamTrack

from media.contrib.stamp import stamp

VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AUDIO_SAMPLES = 960  # 20 ms
_ENCODERS = {"video/VP8": "libvpx", "video/H264": "libx264"}


@dataclass(frozen=True)
class VideoSettings:
    """What the synthetic video looks like and how it is encoded."""

    mime_type: str = "video/VP8"
    width: int = 640
    height: int = 360
    fps: int = 30
    bitrate: int = 1_000_000
    keyframe_interval_s: float = 2.0

    def scaled(self, width: int, height: int, fps: int) -> VideoSettings:
        """Another picture size and rate, the bitrate scaled with the pixels per second
        (a small picture lets one process receive a stream many times over)."""
        share = width * height * fps / (self.width * self.height * self.fps)
        return replace(
            self, width=width, height=height, fps=fps, bitrate=round(self.bitrate * share)
        )


class SyntheticVideoTrack(MediaStreamTrack):
    """A moving 640x360 test pattern at 30 fps, ~1 Mbit/s, VP8 or H.264."""

    kind = "video"

    def __init__(
        self,
        settings: VideoSettings = VideoSettings(),
        on_frame: Callable[[bytes], None] | None = None,
    ) -> None:
        super().__init__()
        if settings.mime_type not in _ENCODERS:
            raise ValueError(f"codec {settings.mime_type!r}: use one of {sorted(_ENCODERS)}")
        self.settings = settings
        self._on_frame = on_frame
        self._encoder = _video_encoder(settings)
        self._pattern = bytes((x * 7) & 0xFF for x in range(settings.width + 256))
        self._count = 0
        self._start: float | None = None
        self._keyframe_wanted = False
        self.keyframes = 0

    @property
    def mime_type(self) -> str:
        return self.settings.mime_type

    def request_keyframe(self) -> None:
        """Make the next frame a keyframe (a player asked, through the relay)."""
        self._keyframe_wanted = True

    async def recv(self) -> av.Packet[Any]:
        while True:
            await self._pace()
            frame = self._picture()
            if self._keyframe_wanted:
                frame.pict_type = av.video.frame.PictureType.I
                self._keyframe_wanted = False
            packets = await asyncio.get_running_loop().run_in_executor(
                None, self._encoder.encode, frame
            )
            if packets:
                return self._packet(packets[0])

    def _packet(self, encoded: av.Packet[Any]) -> av.Packet[Any]:
        data = stamp(self.settings.mime_type, bytes(encoded), self._count)
        if encoded.is_keyframe:
            self.keyframes += 1
        if self._on_frame is not None:
            self._on_frame(data)
        packet = av.Packet(data)
        packet.pts = self._count * VIDEO_CLOCK // self.settings.fps
        packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return packet

    async def _pace(self) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        self._count += 1
        wait = self._start + self._count / self.settings.fps - now
        if wait > 0:
            await asyncio.sleep(wait)

    def _picture(self) -> av.VideoFrame:
        width, height = self.settings.width, self.settings.height
        frame = av.VideoFrame(width, height, "yuv420p")
        shift = self._count * 4
        rows = (
            self._pattern[(shift + y // 8) % 256 : (shift + y // 8) % 256 + width]
            for y in range(height)
        )
        frame.planes[0].update(b"".join(rows))
        chroma = (width // 2) * (height // 2)
        frame.planes[1].update(bytes([(self._count * 3) & 0xFF]) * chroma)
        frame.planes[2].update(bytes([(255 - self._count) & 0xFF]) * chroma)
        frame.pts = self._count
        frame.time_base = fractions.Fraction(1, self.settings.fps)
        return frame


class SyntheticAudioTrack(MediaStreamTrack):
    """A 400 Hz tone in 20 ms Opus frames."""

    kind = "audio"
    mime_type = "audio/opus"

    def __init__(self, on_frame: Callable[[bytes], None] | None = None) -> None:
        super().__init__()
        self._on_frame = on_frame
        self._encoder = av.CodecContext.create("libopus", "w")
        self._encoder.sample_rate = AUDIO_RATE
        self._encoder.layout = "mono"
        self._encoder.format = "s16"
        self._encoder.bit_rate = 32_000
        self._encoder.time_base = fractions.Fraction(1, AUDIO_RATE)
        tone = (round(8000 * math.sin(2 * math.pi * 400 * i / AUDIO_RATE)) for i in range(960))
        self._pcm = struct.pack(f"<{AUDIO_SAMPLES}h", *tone)
        self._count = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet[Any]:
        while True:
            now = time.monotonic()
            if self._start is None:
                self._start = now
            wait = self._start + self._count * AUDIO_SAMPLES / AUDIO_RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
            frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
            frame.planes[0].update(self._pcm)
            frame.sample_rate = AUDIO_RATE
            frame.pts = self._count * AUDIO_SAMPLES
            frame.time_base = fractions.Fraction(1, AUDIO_RATE)
            self._count += 1
            packets = self._encoder.encode(frame)
            if packets:
                return self._packet(packets[0])

    def _packet(self, encoded: av.Packet[Any]) -> av.Packet[Any]:
        data = bytes(encoded)
        if self._on_frame is not None:
            self._on_frame(data)
        packet = av.Packet(data)
        packet.pts = encoded.pts
        packet.time_base = fractions.Fraction(1, AUDIO_RATE)
        return packet


def _video_encoder(settings: VideoSettings) -> av.VideoCodecContext:
    encoder = cast(av.VideoCodecContext, av.CodecContext.create(_ENCODERS[settings.mime_type], "w"))
    encoder.width = settings.width
    encoder.height = settings.height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = fractions.Fraction(1, settings.fps)
    encoder.framerate = fractions.Fraction(settings.fps, 1)
    encoder.bit_rate = settings.bitrate
    encoder.gop_size = max(1, round(settings.keyframe_interval_s * settings.fps))
    if settings.mime_type == "video/VP8":
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    else:
        encoder.profile = "Baseline"
        encoder.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": f"keyint={encoder.gop_size}:min-keyint={encoder.gop_size}:scenecut=0",
        }
    return encoder
