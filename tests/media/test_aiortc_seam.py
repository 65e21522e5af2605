"""The aiortc seam: every private hook still fits the installed aiortc (pinned 1.16.0).

If one of these fails after an aiortc upgrade, read ``media/aiortc_seam.py``'s
docstring: it lists each hook and why it exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription, rtcrtpreceiver
from aiortc.codecs import depayload
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import RtpPacket

from media import _fanout, aiortc_seam, ice
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack, VideoSettings
from media.engine import MediaEngine
from tests.media.conftest import Publish, Watch
from tests.support.waits import eventually

SSRC = 0x1234


async def synthetic_video(mime_type: str, count: int) -> list[bytes]:
    """``count`` frames of the synthetic source, a keyframe first."""
    frames: list[bytes] = []
    track = SyntheticVideoTrack(VideoSettings(mime_type=mime_type), on_frame=frames.append)
    for _ in range(count):
        await track.recv()
    return frames


def test_every_hook_fits_the_installed_aiortc() -> None:
    aiortc_seam.check()


@pytest.mark.parametrize(
    ("owner", "attr"),
    [(Vp8Encoder, "_packetize"), (JitterBuffer, "_remove_frame")],
    ids=["a packetiser", "the jitter buffer's frame release"],
)
def test_a_moved_hook_fails_loudly_naming_it(
    monkeypatch: pytest.MonkeyPatch, owner: type, attr: str
) -> None:
    monkeypatch.delattr(owner, attr)
    with pytest.raises(aiortc_seam.SeamBroken, match=rf"{owner.__name__}\.{attr} is gone"):
        aiortc_seam.check()


async def test_a_receiver_builds_its_bitrate_estimator_only_when_a_packet_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rtcrtpreceiver, "RemoteBitrateEstimator", RemoteBitrateEstimator)
    aiortc_seam.defer_bitrate_estimators()
    pc = ice.peer_connection(())
    try:
        receiver = pc.addTransceiver("video", direction="sendonly").receiver
        deferred = vars(receiver)["_RTCRtpReceiver__remote_bitrate_estimator"]
        assert isinstance(deferred, aiortc_seam.DeferredBitrateEstimator)
        assert deferred.estimator is None, "a send-only player's receiver never builds one"
    finally:
        await pc.close()

    real = RemoteBitrateEstimator()
    arrivals = [(1000 + 5 * i, (i * 300) & 0xFFFFFF, 1100, 0x1234) for i in range(400)]
    estimates = [deferred.add(*a) for a in arrivals]
    assert estimates == [real.add(*a) for a in arrivals]
    assert any(estimate is not None for estimate in estimates), "it did estimate (REMB)"
    aiortc_seam.check()


@pytest.mark.parametrize(
    "mime_type", ["video/VP8", "video/H264"], ids=["VP8 payloads", "H.264 payloads"]
)
async def test_payloads_depayload_to_the_same_frame(mime_type: str) -> None:
    codec = RTCRtpCodecParameters(mimeType=mime_type, clockRate=90000, payloadType=96)
    for frame in await synthetic_video(mime_type, 3):
        payloads = aiortc_seam.packetize(mime_type, frame, picture_id=1)
        assert b"".join(depayload(codec, p) for p in payloads) == frame


async def test_tapped_receivers_never_run_a_decoder(
    engine: MediaEngine, publish: Publish, watch: Watch
) -> None:
    await publish(engine)
    watching = await watch(engine)
    await watching.frames("video", 10)
    await watching.frames("audio", 10)

    for transceiver in watching.player.pc.getTransceivers():
        thread = transceiver.receiver._RTCRtpReceiver__decoder_thread  # type: ignore[attr-defined]
        await asyncio.to_thread(thread.join, 5)
        assert not thread.is_alive(), f"{transceiver.kind} decoder thread is running"
    with pytest.raises(aiortc_seam.SeamBroken, match="already started"):
        aiortc_seam.tap_receiver(transceiver.receiver, lambda *frame: None)


@dataclass
class Tapped:
    """A started, tapped receiver fed RTP packets by hand, and what its tap handed on."""

    receiver: RTCRtpReceiver
    mime_type: str
    frames: list[bytes] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    _seq: int = 0

    def packets(self, frame: bytes, timestamp: int, marker: bool = True) -> list[RtpPacket]:
        """``frame`` as the next RTP packets, split as aiortc's sender splits it."""
        payloads = aiortc_seam.packetize(self.mime_type, frame, picture_id=1)
        packets = [
            RtpPacket(
                payload_type=96,
                marker=int(marker and i == len(payloads) - 1),
                sequence_number=(self._seq + i) & 0xFFFF,
                timestamp=timestamp,
                ssrc=SSRC,
                payload=payload,
            )
            for i, payload in enumerate(payloads)
        ]
        self._seq += len(packets)
        return packets

    def padding(self, timestamp: int) -> RtpPacket:
        """The next RTP packet, with padding and no payload (a bandwidth probe)."""
        packet = RtpPacket(
            payload_type=96, sequence_number=self._seq & 0xFFFF, timestamp=timestamp, ssrc=SSRC
        )
        packet.padding_size = 200
        self._seq += 1
        return packet

    async def feed(self, *packets: RtpPacket) -> None:
        for packet in packets:
            await self.receiver._handle_rtp_packet(packet, arrival_time_ms=0)

    def _frame(self, mime_type: str, data: bytes, timestamp: int) -> None:
        assert mime_type == self.mime_type
        self.frames.append(data)
        self.timestamps.append(timestamp)


TapFactory = Callable[[str], Awaitable[Tapped]]


@pytest.fixture
async def tapped() -> AsyncIterator[TapFactory]:
    """Receivers of real peer connections, tapped and started on one codec; closed at teardown."""
    pcs: list[RTCPeerConnection] = []

    async def make(mime_type: str) -> Tapped:
        pc = ice.peer_connection(())
        pcs.append(pc)
        kind = mime_type.split("/")[0]
        receiver = pc.addTransceiver(kind, direction="recvonly").receiver
        receiver._track = RemoteStreamTrack(kind)  # what a remote description would add
        result = Tapped(receiver, mime_type)
        aiortc_seam.tap_receiver(receiver, result._frame)
        codec = RTCRtpCodecParameters(
            mimeType=mime_type,
            clockRate=48000 if kind == "audio" else 90000,
            channels=2 if kind == "audio" else None,
            payloadType=96,
        )
        await receiver.receive(
            RTCRtpReceiveParameters(
                codecs=[codec], encodings=[RTCRtpDecodingParameters(ssrc=SSRC, payloadType=96)]
            )
        )
        return result

    yield make
    for pc in pcs:
        await pc.close()


@pytest.mark.parametrize(
    "mime_type",
    ["video/VP8", "video/H264"],
    ids=["VP8 frame with its marker packet", "H.264 access unit (STAP-A, FU-A) with its marker"],
)
async def test_a_frame_is_handed_on_with_its_last_packet(
    tapped: TapFactory, mime_type: str
) -> None:
    """Not one frame later, when the next frame's first packet arrives, as aiortc's
    jitter buffer would: each frame reaches the sink exactly when its last packet
    arrives, before any packet of the next one, byte for byte."""
    receiving = await tapped(mime_type)
    sent = await synthetic_video(mime_type, 3)

    for n, frame in enumerate(sent):
        packets = receiving.packets(frame, timestamp=3000 * n)
        if n == 0 and mime_type == "video/H264":
            assert {p.payload[0] & 0x1F for p in packets} == {24, 28}, "STAP-A, then FU-A"
        assert len(packets) > 1 or n > 0, "the keyframe should span several packets"
        for i, packet in enumerate(packets):
            await receiving.feed(packet)
            assert receiving.frames == sent[: n + (i == len(packets) - 1)]
    assert receiving.timestamps == [0, 3000, 6000]


async def test_every_opus_packet_is_handed_on_at_once_marker_or_not(tapped: TapFactory) -> None:
    """Audio frames are one packet each, and browsers set no marker on Opus: no
    prefetch either (aiortc holds four audio frames back for its decoder)."""
    receiving = await tapped("audio/opus")
    sent: list[bytes] = []
    track = SyntheticAudioTrack(on_frame=sent.append)
    for n in range(3):
        await track.recv()
        await receiving.feed(*receiving.packets(sent[n], timestamp=960 * n, marker=False))
        assert receiving.frames == sent[: n + 1]


async def test_a_frame_missing_a_packet_waits_with_the_frames_behind_it(
    tapped: TapFactory,
) -> None:
    """A hole keeps its frame, and the complete frames after it, until the missing
    packet arrives (retransmitted after a NACK, or just late); then all of them go
    at once, in order, with their own timestamps."""
    receiving = await tapped("video/VP8")
    sent = await synthetic_video("video/VP8", 3)
    first, second, third = (
        receiving.packets(f, timestamp=1000 + 3000 * n) for n, f in enumerate(sent)
    )
    assert len(first) >= 3, "the keyframe should span at least three packets"
    lost = first.pop(1)

    await receiving.feed(*first, *second, *third)
    assert receiving.frames == []

    await receiving.feed(lost)
    assert receiving.frames == sent
    assert receiving.timestamps == [0, 3000, 6000]


async def test_a_frame_without_a_marker_goes_when_the_next_one_starts(
    tapped: TapFactory,
) -> None:
    """A sender that never sets the marker bit gets aiortc's own rule."""
    receiving = await tapped("video/VP8")
    sent = await synthetic_video("video/VP8", 2)
    first, second = (
        receiving.packets(f, timestamp=3000 * n, marker=False) for n, f in enumerate(sent)
    )

    await receiving.feed(*first)
    assert receiving.frames == []
    await receiving.feed(second[0])
    assert receiving.frames == sent[:1]


async def test_padding_between_frames_is_no_frame(tapped: TapFactory) -> None:
    """Senders probe bandwidth with padding-only packets stamped with the last
    frame's timestamp; they reach neither the frame before them nor a frame of
    their own."""
    receiving = await tapped("video/VP8")
    sent = await synthetic_video("video/VP8", 2)

    await receiving.feed(*receiving.packets(sent[0], timestamp=0), receiving.padding(0))
    await receiving.feed(receiving.padding(0), *receiving.packets(sent[1], timestamp=3000))
    assert receiving.frames == sent


async def test_a_frame_whose_lost_packet_never_comes_is_dropped_whole_on_overflow(
    tapped: TapFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiortc's overflow handling, unchanged: the incomplete frame is dropped whole
    and a keyframe is asked for; every complete frame behind it goes at once."""
    receiving = await tapped("video/VP8")
    asked: list[int] = []

    async def send_pli(media_ssrc: int) -> None:
        asked.append(media_ssrc)

    monkeypatch.setattr(receiving.receiver, "_send_rtcp_pli", send_pli)
    sent = [bytes([n % 250 + 1]) * 3000 for n in range(200)]  # 3 packets each: 600 > 512
    packets = [receiving.packets(frame, timestamp=3000 * n) for n, frame in enumerate(sent)]
    del packets[0][1]

    for frame_packets in packets:
        await receiving.feed(*frame_packets)

    assert asked == [SSRC]
    assert receiving.frames, "the frames behind the dropped one never came"
    assert receiving.frames == sent[len(sent) - len(receiving.frames) :]
    assert len(receiving.frames) < len(sent)


@contextlib.asynccontextmanager
async def connected_peers() -> AsyncIterator[tuple[RTCPeerConnection, RTCPeerConnection]]:
    """Two aiortc peers connected on 127.0.0.1 (ICE and DTLS, a data channel, no media)."""
    offerer, answerer = ice.peer_connection(()), ice.peer_connection(())
    try:
        offerer.createDataChannel("seam")  # a transport to negotiate, no media needed
        offer = await ice.describe(offerer, "offer", ("127.0.0.1",))
        await answerer.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        answer = await ice.describe(answerer, "answer", ("127.0.0.1",))
        await offerer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        connected = asyncio.Event()

        def changed() -> None:
            if offerer.connectionState == answerer.connectionState == "connected":
                connected.set()

        for pc in (offerer, answerer):
            pc.on("connectionstatechange", changed)
        changed()
        await asyncio.wait_for(connected.wait(), 10)
        assert offerer.connectionState == answerer.connectionState == "connected"
        yield offerer, answerer
    finally:
        await offerer.close()
        await answerer.close()


async def test_our_outbound_srtp_keys_are_what_the_peer_decrypts_with() -> None:
    """Both DTLS roles: what the native sender protects with the keys the seam derives,
    the other peer's own aiortc SRTP session unprotects; the socket is the nominated one."""
    async with connected_peers() as (offerer, answerer):
        for ours, theirs in ((offerer, answerer), (answerer, offerer)):
            assert ours.sctp is not None and theirs.sctp is not None
            dtls = ours.sctp.transport
            out = aiortc_seam.outbound_srtp(dtls)
            pair = dtls.transport._connection._nominated[1]
            assert out.address == pair.remote_addr[:2] and out.fd >= 0
            sender = _fanout.Sender(out.profile, out.key, -1, None)
            slot = _fanout.Slot(sender, 0x5EED, 96, b"", 1, 2, 90000)
            frame = _fanout.Frame([b"first", b"second"], 0, True, 1)
            plain = [theirs.sctp.transport._rx_srtp.unprotect(p) for p in slot.protect(frame)]
            assert [p[12:] for p in plain] == [b"first", b"second"]
            assert out.profile == dtls._srtp_profiles[0].libsrtp_profile, "AES-GCM preferred"


async def test_what_waits_unread_in_a_peers_socket_is_counted() -> None:
    async with connected_peers() as (offerer, _answerer):
        ours = next(iter(aiortc_seam.ice_connections(offerer)))._nominated[1]
        address = ours.protocol.transport.get_extra_info("sockname")
        before = aiortc_seam.queued_bytes(offerer)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            for _ in range(50):  # no await: the event loop cannot read them meanwhile
                stranger.sendto(bytes(1200), address)
        queued = aiortc_seam.queued_bytes(offerer)
        assert queued >= before + 50 * 1200
        await eventually(
            lambda: aiortc_seam.queued_bytes(offerer) < 1200, "the loop reading them away"
        )


def closed_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing listens on (bound, then let go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_only_the_nominated_remote_refusing_a_packet_counts_as_a_refusal() -> None:
    async with connected_peers() as (offerer, answerer):
        refusals: list[str] = []
        assert aiortc_seam.watch_refusals(offerer, lambda: refusals.append("refused"))
        ours = next(iter(aiortc_seam.ice_connections(offerer)))._nominated[1]
        theirs = next(iter(aiortc_seam.ice_connections(answerer)))._nominated[1]

        for _ in range(3):  # a port elsewhere on the host refuses: that is not our peer
            ours.protocol.transport.sendto(b"stray", ("127.0.0.1", closed_udp_port()))
        await asyncio.sleep(0.3)
        assert refusals == []
        assert offerer.connectionState == "connected"

        theirs.protocol.transport.close()  # the peer's socket is gone, as in a crash
        await asyncio.sleep(0.05)
        ours.protocol.transport.sendto(b"anyone?", ours.remote_addr)
        await eventually(lambda: refusals, "the refusal of the peer's closed port")
        assert refusals == ["refused"]
