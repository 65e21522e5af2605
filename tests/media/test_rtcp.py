"""RTCP keeps working around the forwarded RTP: keyframe requests, NACK, sender reports."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

from media import aiortc_seam, codecs, ice
from media.engine import MediaEngine
from tests.media.conftest import Publish, Watch
from tests.support.waits import WAIT


def video_receiver(pc: RTCPeerConnection) -> RTCRtpReceiver:
    return next(t.receiver for t in pc.getTransceivers() if t.kind == "video")


async def until(condition: Callable[[], bool], changed: asyncio.Event) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            changed.clear()
            await changed.wait()


async def test_a_player_pli_reaches_the_publisher_as_a_keyframe_request(
    engine: MediaEngine, publish: Publish, watch: Watch
) -> None:
    published = await publish(engine, keyframe_interval_s=10)
    watching = await watch(engine)
    await watching.frames("video", 10)
    await asyncio.sleep(0.3)  # past the join's own keyframe request
    before = published.video.keyframes
    seen = watching.player.tracks["video"].keyframes

    await aiortc_seam.request_keyframe(video_receiver(watching.player.pc))

    await watching.frames("video", watching.player.tracks["video"].frames + 20)
    assert published.video.keyframes > before
    assert watching.player.tracks["video"].keyframes > seen


async def test_a_nacked_packet_is_sent_again(engine: MediaEngine, publish: Publish) -> None:
    await publish(engine)
    arrived: list[tuple[int, int]] = []  # (SSRC, sequence number), from the clear RTP header
    changed = asyncio.Event()

    def packet(data: bytes) -> None:
        sequence, _, ssrc = struct.unpack_from("!HII", data, 2)
        arrived.append((ssrc, sequence))
        changed.set()

    pc = ice.peer_connection(())
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        transceiver.setCodecPreferences(codecs.preferences("video"))
        aiortc_seam.count_rtp(pc, packet)
        offer = await ice.describe(pc, "offer", ("127.0.0.1",))
        answer = await engine.play("s1", offer)
        await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        await until(lambda: len(arrived) >= 20, changed)

        ssrc, lost = arrived[5]
        await video_receiver(pc)._send_rtcp_nack(ssrc, [lost])

        await until(lambda: arrived.count((ssrc, lost)) == 2, changed)
    finally:
        await pc.close()


async def test_sender_reports_count_the_forwarded_packets(
    engine: MediaEngine, publish: Publish, watch: Watch
) -> None:
    await publish(engine)
    watching = await watch(engine)
    await watching.frames("video", 5)
    receiver = video_receiver(watching.player.pc)

    async with asyncio.timeout(WAIT):
        reports: list[Any] = []
        while not reports:
            await asyncio.sleep(0.2)  # sender reports come every 0.5-1.5 s
            stats = await receiver.getStats()
            reports = [s for s in stats.values() if s.type == "remote-outbound-rtp"]
    inbound = next(s for s in stats.values() if s.type == "inbound-rtp")
    report = reports[0]
    assert report.packetsSent > 0 and report.bytesSent > 0
    assert report.packetsSent <= inbound.packetsReceived + 200
