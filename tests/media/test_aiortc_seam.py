"""The aiortc seam: every private hook still fits the installed aiortc (pinned 1.16.0).

If one of these fails after an aiortc upgrade, read ``media/aiortc_seam.py``'s
docstring: it lists each hook and why it exists.
"""

from __future__ import annotations

import asyncio

import pytest
from aiortc.codecs import depayload
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media import aiortc_seam
from media.engine import MediaEngine
from media.synthetic import SyntheticVideoTrack, VideoSettings
from tests.media.conftest import Publish, Watch


def test_every_hook_fits_the_installed_aiortc() -> None:
    aiortc_seam.check()


def test_a_moved_hook_fails_loudly_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(Vp8Encoder, "_packetize")
    with pytest.raises(aiortc_seam.SeamBroken, match=r"Vp8Encoder\._packetize is gone"):
        aiortc_seam.check()


@pytest.mark.parametrize(
    "mime_type", ["video/VP8", "video/H264"], ids=["VP8 payloads", "H.264 payloads"]
)
async def test_payloads_depayload_to_the_same_frame(mime_type: str) -> None:
    frames: list[bytes] = []
    track = SyntheticVideoTrack(VideoSettings(mime_type=mime_type), on_frame=frames.append)
    for _ in range(3):
        await track.recv()
    codec = RTCRtpCodecParameters(mimeType=mime_type, clockRate=90000, payloadType=96)
    for frame in frames:
        payloads = aiortc_seam.packetize(mime_type, frame, picture_id=1)
        assert b"".join(depayload(codec, p) for p in payloads) == frame


async def test_tapped_receivers_never_run_a_decoder(
    engine: MediaEngine, publish: Publish, watch: Watch
) -> None:
    await publish(engine)
    watching = await watch(engine)
    await watching.frames("video", 10)
    await watching.frames("audio", 10)

    for transceiver in watching.viewer.pc.getTransceivers():
        thread = transceiver.receiver._RTCRtpReceiver__decoder_thread
        await asyncio.to_thread(thread.join, 5)
        assert not thread.is_alive(), f"{transceiver.kind} decoder thread is running"
    with pytest.raises(aiortc_seam.SeamBroken, match="already started"):
        aiortc_seam.tap_receiver(transceiver.receiver, lambda *frame: None)
