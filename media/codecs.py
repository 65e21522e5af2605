"""The codecs we relay (H.264 and VP8 video, Opus audio) and what we read from them.

We never decode, but a relay must still know where a video stream can be
joined: ``is_keyframe`` reads that from the encoded bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCRtpCodecCapability, RTCRtpReceiver

from media import aiortc_seam

RELAYED = {"video": ("video/VP8", "video/H264"), "audio": ("audio/opus",)}
RTX = "video/rtx"

_H264_IDR = 5
_H264_SPS = 7


@dataclass(frozen=True)
class TrackCodec:
    """The codec of one relayed track, as aiortc can negotiate it."""

    kind: str
    capability: RTCRtpCodecCapability

    @property
    def mime_type(self) -> str:
        return str(self.capability.mimeType)

    @property
    def clock_rate(self) -> int:
        return int(self.capability.clockRate)

    def preferences(self) -> list[RTCRtpCodecCapability]:
        """Codec preferences that make a transceiver negotiate this codec only."""
        return [self.capability, *_rtx(self.kind)]


def relayable(kind: str) -> list[RTCRtpCodecCapability]:
    """aiortc's capabilities for ``kind``, narrowed to the codecs we relay."""
    return [c for c in _capabilities(kind) if c.mimeType in RELAYED.get(kind, ())]


def preferences(kind: str) -> list[RTCRtpCodecCapability]:
    """Every relayable codec of ``kind``, for an offer whose answerer picks."""
    return [*relayable(kind), *_rtx(kind)]


def match(kind: str, offered: object) -> TrackCodec | None:
    """The relayable codec an offered codec description can talk to, if any."""
    for capability in relayable(kind):
        if aiortc_seam.codec_compatible(capability, offered):
            return TrackCodec(kind, capability)
    return None


def is_keyframe(mime_type: str, frame: bytes) -> bool:
    """Whether a decoder can start at this frame (audio frames always can)."""
    if mime_type == "video/VP8":
        return len(frame) > 0 and frame[0] & 0x01 == 0
    if mime_type == "video/H264":
        return any(
            nal and nal[0] & 0x1F in (_H264_IDR, _H264_SPS)
            for nal in aiortc_seam.split_annexb(frame)
        )
    return True


def _rtx(kind: str) -> list[RTCRtpCodecCapability]:
    if kind != "video":
        return []
    return [c for c in _capabilities(kind) if c.mimeType == RTX]


def _capabilities(kind: str) -> list[RTCRtpCodecCapability]:
    capabilities = RTCRtpReceiver.getCapabilities(kind)
    return list(capabilities.codecs) if capabilities is not None else []
