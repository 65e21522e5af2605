"""One track of one player: the stream's frames out as that player's RTP stream.

The payloads were built once per stream (``TrackSource.push``). Per player the
native fan-out (``media._fanout``) does the rest: a ``Slot`` holds the player's
RTP sequence and timestamp spaces (SSRC, payload type, MID extension), its
counters and a short NACK history of references to the shared payloads; the
track's ``Fanout`` rewrites headers, SRTP-protects with the player's own
outbound keys and sends with ``sendmmsg``, once per frame for every player,
without the GIL. A player whose nominated ICE pair is a TURN relay (whose send
path awaits) reads an ``Outlet`` in its own task instead; its packets are still
built and protected by its slot, and sent with ``aiortc_seam.send_protected``.

aiortc's RTCP stays in charge of the rest: receiver reports reach its sender,
sender reports read the slot's counters (``aiortc_seam.report_sent``), and PLI,
FIR and NACK come here (keyframe request upstream, retransmission from the
slot's history).

Sequence numbers are the player's own counter and timestamps are the upstream's
plus a per-player offset, re-based natively whenever the upstream changes (a
new ``EncodedFrame.epoch``, when a re-pull feeds the stream's source): a player
sees one continuous RTP stream across publisher reconnects and pull failovers.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import RTCRtpSender

from media import _fanout, aiortc_seam
from media.outlet import Outlet
from media.source import TrackSource

logger = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None]], None]


def mid_extension(extension_id: int | None, mid: str | None) -> bytes:
    """The RTP one-byte-header extension block carrying the MID (RFC 8843), or nothing."""
    if extension_id is None or not mid:
        return b""
    value = mid.encode()
    element = bytes([(extension_id << 4) | (len(value) - 1)]) + value
    element += b"\x00" * (-len(element) % 4)
    return b"\xbe\xde" + (len(element) // 4).to_bytes(2, "big") + element


class Forwarder:
    """Sends one player track; owns the RTP sequence and timestamp spaces it sends."""

    def __init__(
        self,
        sender: RTCRtpSender,
        track: TrackSource,
        srtp: _fanout.Sender,
        payload_type: int,
        extension: bytes,
        queue_limit: int,
    ) -> None:
        self.sender = sender
        self.track = track
        self.slot = _fanout.Slot(
            srtp,
            aiortc_seam.sender_ssrc(sender),
            payload_type,
            extension,
            random.randint(0, 0x7FFF),
            random.getrandbits(32),
            track.codec.clock_rate,
        )
        self._direct = srtp.sends
        self._queue_limit = queue_limit
        self._outlet: Outlet | None = None
        self._closed = False
        aiortc_seam.report_sent(sender, self.slot)
        aiortc_seam.hook_sender_feedback(sender, self._keyframe_wanted, self._retransmit)

    def start(self, spawn: Spawn) -> None:
        """Start forwarding: in the track's fan-out, or (TURN) in a task ``spawn`` owns."""
        if self._direct:
            self.track.attach(self.slot, self._queue_limit)
        else:
            self._outlet = self.track.subscribe(self._queue_limit)
            spawn(self._relayed(self._outlet))

    def close(self) -> None:
        """Stop forwarding and leave the source."""
        self._closed = True
        if self._outlet is not None:
            self.track.unsubscribe(self._outlet)
        else:
            self.track.detach(self.slot)

    async def _relayed(self, outlet: Outlet) -> None:
        """Forward through a TURN relay, awaiting each send, until the outlet closes."""
        try:
            while frames := await outlet.take():
                for frame in frames:
                    for packet in self.slot.protect(frame.packed):
                        await aiortc_seam.send_protected(self.sender, packet)
                        self.track.meter.bytes_out += len(packet)
        except ConnectionError:
            logger.debug("player transport closed while forwarding %s", self.track.codec.kind)

    def _keyframe_wanted(self) -> None:
        if self.track.codec.kind == "video":
            self.track.request_keyframe()

    async def _retransmit(self, lost: list[int]) -> None:
        """Resend NACKed packets on the original SSRC (we negotiate no RTX stream of our own)."""
        if self._closed:
            return
        try:
            for packet in self.slot.retransmit(lost):  # empty when the slot sends by itself
                await aiortc_seam.send_protected(self.sender, packet)
        except ConnectionError:
            logger.debug("player transport closed before a retransmission")
