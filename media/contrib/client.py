"""WebRTC client peers for tests, benchmarks, the demo and the CLI: no HTTP here.

``Publisher`` sends tracks (usually the synthetic ones) to a WHIP-like
``exchange(offer) -> answer`` callable. ``Player`` receives a stream, through the
same receive seam as the engine, so it never decodes: it counts frames, bytes
and keyframes, reads each frame's stamp for latency, and can keep the frames
for byte-for-byte comparison. The HTTP layer (``tierstream publish --whip``,
``play --whep``) wraps these with an exchange that POSTs the SDP.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from media import aiortc_seam, codecs, ice
from media.contrib import stamp
from media.types import Exchange

LOOPBACK = ("127.0.0.1",)


class Publisher:
    """Publishes tracks; keyframe requests from the far end reach tracks that take them.

    A track that names its ``mime_type`` (the synthetic ones do: they send
    pre-encoded packets) is offered in that codec only.
    """

    def __init__(
        self,
        tracks: Sequence[MediaStreamTrack],
        candidate_addresses: Sequence[str] = LOOPBACK,
        ice_servers: Sequence[str] = (),
    ) -> None:
        self.tracks = tuple(tracks)
        self._addresses = tuple(candidate_addresses)
        self.pc = ice.peer_connection(ice_servers)
        for track in self.tracks:
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            mime_type = getattr(track, "mime_type", None)
            if mime_type is not None:
                transceiver.setCodecPreferences(
                    [
                        c
                        for c in codecs.preferences(track.kind)
                        if c.mimeType in (mime_type, codecs.RTX)
                    ]
                )
            request = getattr(track, "request_keyframe", None)
            if request is not None:
                aiortc_seam.hook_sender_feedback(transceiver.sender, request)

    async def start(self, exchange: Exchange) -> None:
        offer = await ice.describe(self.pc, "offer", self._addresses)
        answer = await exchange(offer)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class TrackReport:
    """What a player received on one track."""

    frames: int = 0
    size: int = 0
    keyframes: int = 0
    first_frame_at: float | None = None
    first_keyframe_at: float | None = None
    latencies: list[float] = field(default_factory=list)
    kept: list[bytes] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class PlayerSummary:
    fps: float
    kbps: float
    keyframes: int
    latency_p50_ms: float | None


class Player:
    """Receives a stream without decoding it and reports what arrived."""

    def __init__(
        self,
        kinds: Sequence[str] = ("video", "audio"),
        candidate_addresses: Sequence[str] = LOOPBACK,
        ice_servers: Sequence[str] = (),
        keep_frames: bool = False,
    ) -> None:
        self._addresses = tuple(candidate_addresses)
        self._keep = keep_frames
        self.pc = ice.peer_connection(ice_servers)
        self.tracks: dict[str, TrackReport] = {}
        self.ended = asyncio.Event()
        self._kinds = tuple(kinds)
        self._arrived = asyncio.Event()
        self.pc.on("connectionstatechange", self._state_changed)

    async def play(self, exchange: Exchange) -> None:
        """Client offer (WHEP)."""
        for kind in self._kinds:
            self._receive(kind)
        offer = await ice.describe(self.pc, "offer", self._addresses)
        answer = await exchange(offer)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def answer(self, offer_sdp: str) -> str:
        """Server offer (Ant Media WebSocket play): take the offer, return our answer."""
        for kind in self._kinds:
            if f"m={kind} " in offer_sdp:
                self._receive(kind)
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        return await ice.describe(self.pc, "answer", self._addresses)

    async def wait_for_frames(self, kind: str, count: int) -> TrackReport:
        """Wait until ``count`` frames of ``kind`` arrived; callers bound the wait."""
        while self.tracks.get(kind, TrackReport()).frames < count:
            self._arrived.clear()
            await self._arrived.wait()
        return self.tracks[kind]

    def summary(self, kind: str = "video") -> PlayerSummary:
        report = self.tracks.get(kind, TrackReport())
        elapsed = time.monotonic() - (report.first_frame_at or time.monotonic())
        latency = statistics.median(report.latencies) * 1000 if report.latencies else None
        return PlayerSummary(
            fps=report.frames / elapsed if elapsed > 0 else 0.0,
            kbps=report.size * 8 / 1000 / elapsed if elapsed > 0 else 0.0,
            keyframes=report.keyframes,
            latency_p50_ms=latency,
        )

    async def close(self) -> None:
        await self.pc.close()

    def _receive(self, kind: str) -> None:
        transceiver = self.pc.addTransceiver(kind, direction="recvonly")
        transceiver.setCodecPreferences(codecs.preferences(kind))
        aiortc_seam.tap_receiver(transceiver.receiver, self._frame)

    def _frame(self, mime_type: str, data: bytes, timestamp: int) -> None:
        now = time.monotonic()
        report = self.tracks.setdefault(mime_type.split("/")[0], TrackReport())
        report.frames += 1
        report.size += len(data)
        if report.first_frame_at is None:
            report.first_frame_at = now
        if mime_type.startswith("video/") and codecs.is_keyframe(mime_type, data):
            report.keyframes += 1
            if report.first_keyframe_at is None:
                report.first_keyframe_at = now
        found = stamp.read(data)
        if found is not None:
            report.latencies.append(time.time() - found.sent_at)
        if self._keep:
            report.kept.append(data)
            report.timestamps.append(timestamp)
        self._arrived.set()

    def _state_changed(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.ended.set()
