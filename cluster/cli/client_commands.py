"""``tierstream publish`` and ``tierstream play``: a synthetic publisher and a counting player.

For people checking a node by hand: ``publish`` sends the synthetic test pattern
and tone over WHIP, ``play`` receives a stream over WHEP without decoding it and
prints, every second, the frame rate, bitrate, keyframes and the latency read
from the frames' embedded send times.
"""

from __future__ import annotations

import asyncio
import ssl
import statistics
import time
from dataclasses import replace

from cluster.streams.whip_client import WhipClient
from media.contrib.client import Player, Publisher, TrackReport
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack, VideoSettings

CODECS = {"vp8": "video/VP8", "h264": "video/H264"}


async def publish(
    url: str,
    settings: VideoSettings,
    seconds: float | None,
    token: str | None,
    candidates: tuple[str, ...],
    verify: ssl.SSLContext | bool = True,
) -> None:
    video = SyntheticVideoTrack(settings)
    publisher = Publisher([video, SyntheticAudioTrack()], candidate_addresses=candidates)
    client = WhipClient(url, token, verify=verify)
    try:
        await publisher.start(client.exchange)
        picture = f"{settings.width}x{settings.height} {settings.fps} fps"
        print(f"publishing {settings.mime_type} {picture} to {client.location}", flush=True)
        started = time.monotonic()
        while seconds is None or time.monotonic() - started < seconds:
            await asyncio.sleep(1.0)
            state = publisher.pc.connectionState
            print(f"{time.monotonic() - started:6.1f} s  {state}", flush=True)
            if state in ("failed", "closed"):
                raise SystemExit(f"the connection {state}")
    finally:
        await client.close()
        await publisher.close()


async def play(
    url: str,
    seconds: float | None,
    token: str | None,
    candidates: tuple[str, ...],
    verify: ssl.SSLContext | bool = True,
) -> None:
    player = Player(candidate_addresses=candidates)
    client = WhipClient(url, token, verify=verify)
    try:
        await player.play(client.exchange)
        print(f"playing {client.location}", flush=True)
        started = time.monotonic()
        seen = TrackReport()
        while seconds is None or time.monotonic() - started < seconds:
            try:
                await asyncio.wait_for(player.ended.wait(), 1.0)
                raise SystemExit("the stream ended")
            except TimeoutError:
                pass
            video = player.tracks.get("video", TrackReport())
            print(f"{time.monotonic() - started:6.1f} s  {_interval(seen, video)}", flush=True)
            seen = replace(video, latencies=list(video.latencies))
    finally:
        await client.close()
        await player.close()


def _interval(before: TrackReport, now: TrackReport) -> str:
    """What arrived since the previous line (one second): rate, size, keyframes, latency."""
    latencies = now.latencies[len(before.latencies) :]
    latency = f"{statistics.median(latencies) * 1000:.1f} ms" if latencies else "-"
    return (
        f"{now.frames - before.frames:3d} fps  {(now.size - before.size) * 8 / 1000:7.1f} kbit/s"
        f"  {now.keyframes} keyframes  latency p50 {latency}"
    )
