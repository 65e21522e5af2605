"""The media plane's vocabulary: what crosses to the control plane.

Only plain data crosses: SDP strings, ids, frozen dataclasses and the
``StreamListener`` protocol that the control plane implements.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

Exchange = Callable[[str], Awaitable[str]]
"""Sends an SDP offer to an upstream node and returns its answer (internal WHEP)."""


class StreamListener(Protocol):
    """Events the media engine reports; called on the engine's event loop, must not block."""

    def stream_started(self, stream_id: str, codecs: tuple[str, ...]) -> None:
        """A publisher (or upstream pull) is connected and its media is flowing."""

    def stream_ended(self, stream_id: str) -> None:
        """The stream ended here: its publisher left, or ``end_stream``, or the engine closed."""

    def upstream_lost(self, stream_id: str, closed_by_upstream: bool) -> None:
        """A stream's pull failed or went silent; its players are held until a new ``pull``.

        ``closed_by_upstream``: the upstream closed the connection itself (it ended the
        stream or gave its role up), so it still answers; else it failed or went silent.

        The stream stays on this node (``has_stream``) with its players and downstream
        players connected; the control plane pulls it again from another
        upstream, or calls ``end_stream``.
        """

    def session_ended(self, session_id: str) -> None:
        """A session closed, for whatever reason; signalling layers tell their client."""

    def players_changed(self, stream_id: str, players: int) -> None:
        """The number of players of a stream on this node changed (downstreams not counted)."""


@dataclass(frozen=True)
class SessionDescription:
    """An SDP (answer, or offer for server-offer play) and the session it belongs to."""

    session_id: str
    sdp: str


@dataclass(frozen=True)
class MediaStats:
    """A snapshot of the engine's load, for heartbeats and /metrics.

    ``players`` and ``players_per_stream`` count players only; ``downstreams`` counts
    the sessions of downstream nodes pulling from us (``play(..., downstream=True)``),
    which cost the same to serve but are not audience.
    ``loop_busy`` is the share of the last second the media event
    loop's thread spent on CPU; ``fanout_busy`` the fan-out threads' share (per
    thread); ``forwarding_busy`` the share admission and shedding go by: the
    fullest of those and of both over the cores, of the last second without joining
    players' handshakes (``media.load``); ``ingest_backlog`` the bytes that waited
    unread in the fullest ingest socket then (media arriving faster than the loop
    reads it).
    """

    publishers: int
    players: int
    pulls: int
    downstreams: int
    bitrate_in_kbps: float
    bitrate_out_kbps: float
    players_per_stream: tuple[tuple[str, int], ...]
    loop_busy: float = 0.0
    fanout_busy: float = 0.0
    forwarding_busy: float = 0.0
    ingest_backlog: int = 0


@dataclass(frozen=True)
class StreamInfo:
    """What a player page asks about a stream (Ant Media's ``streamInformation``).

    Width and height come from the cached keyframe's headers (0 until one has
    arrived); bitrates are measured over the last two seconds.
    """

    video_codec: str
    width: int
    height: int
    video_bitrate_bps: int
    audio_bitrate_bps: int
