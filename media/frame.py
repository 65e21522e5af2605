"""The unit the relay moves: one encoded frame, packetised once per stream."""

from __future__ import annotations

from dataclasses import dataclass

from media._fanout import Frame


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded frame of one track, exactly as the upstream sent it.

    ``timestamp`` is in the codec's RTP clock, counted from the upstream's first
    frame; ``epoch`` names that upstream (a new publisher or pull gets a new
    one), so a player's sender knows when to re-base its RTP timestamps.
    ``payloads`` are the RTP payloads, built once for every player of the
    stream, and ``packed`` the same payloads packed once for the native fan-out.
    """

    data: bytes
    timestamp: int
    keyframe: bool
    payloads: tuple[bytes, ...]
    epoch: int
    packed: Frame
