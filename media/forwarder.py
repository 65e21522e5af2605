"""One track of one player: frames from an outlet out as that player's RTP stream.

The payloads were built once per stream (``TrackSource.push``); per player we
only write a 12-byte header plus the MID extension (SSRC, payload type, sequence
number, timestamp), SRTP-protect the packet with the player's aiortc session and
hand it to the socket (``aiortc_seam.RtpWriter``). aiortc's own per-player
encode/packetise loop never runs. That per-packet work is the part to move into
native code next: header rewrite, SRTP and ``sendto`` take bytes in and out.

Sending to a UDP socket never waits, so a forwarder normally sends as soon as
its outlet gets a frame, inside the source's fan-out loop: no task wake-up per
frame and player. Where a player's packets can back up is the socket's send
buffer: past ``CONGESTED`` bytes the player drops to the next keyframe, like an
overflowing outlet. A player reached through a TURN relay (whose send path
awaits) gets its own task reading the outlet instead.

aiortc's RTCP stays in charge of the rest: receiver reports reach its sender,
sender reports count what we forwarded (updated at most every 100 ms), and PLI,
FIR and NACK come here (keyframe request upstream, retransmission from a short
per-player history of shared payloads).

Sequence numbers are the player's own counter and timestamps are the upstream's
plus a per-player offset, re-based whenever the upstream changes (a new
``EncodedFrame.epoch``, when a re-pull feeds the stream's source): a player sees
one continuous RTP stream across publisher reconnects and pull failovers.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import RTCRtpSender

from media import aiortc_seam
from media.frame import EncodedFrame
from media.outlet import Outlet
from media.source import TrackSource

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHII")
_HISTORY = 256  # packets per player track remembered for NACK retransmission (~2 s of video)
_COUNTERS_EVERY = 0.1  # seconds between updates of aiortc's sender-report counters
CONGESTED = 256 * 1024  # bytes waiting in a player's socket buffer before it skips ahead

Spawn = Callable[[Coroutine[Any, Any, None]], None]


def mid_extension(extension_id: int | None, mid: str | None) -> bytes:
    """The RTP one-byte-header extension block carrying the MID (RFC 8843), or nothing."""
    if extension_id is None or not mid:
        return b""
    value = mid.encode()
    element = bytes([(extension_id << 4) | (len(value) - 1)]) + value
    element += b"\x00" * (-len(element) % 4)
    return b"\xbe\xde" + struct.pack("!H", len(element) // 4) + element


class Forwarder:
    """Writes one player track; owns the RTP sequence and timestamp spaces it sends."""

    def __init__(
        self,
        sender: RTCRtpSender,
        track: TrackSource,
        outlet: Outlet,
        payload_type: int,
        extension: bytes,
    ) -> None:
        self.sender = sender
        self.track = track
        self._outlet = outlet
        self._first_byte = 0x90 if extension else 0x80
        self._payload_type = payload_type
        self._extension = extension
        self._ssrc = aiortc_seam.sender_ssrc(sender)
        self._writer = aiortc_seam.RtpWriter(sender)
        self._spawn: Spawn | None = None
        self._direct = False
        self._closed = False
        self._clock_rate = track.codec.clock_rate
        self._seq = random.randint(0, 0x7FFF)
        self._offset = 0
        self._epoch = 0
        self._last_ts = random.getrandbits(32)
        self._last_sent = 0.0
        self._counted_at = 0.0
        # (sequence number, marker+payload type, timestamp, shared payload): the
        # payload is the stream's own bytes object, so a player's history is small.
        self._history: list[tuple[int, int, int, bytes] | None] = [None] * _HISTORY
        self.packets = 0
        self.octets = 0
        self.frames = 0
        aiortc_seam.hook_sender_feedback(sender, self._keyframe_wanted, self._retransmit)

    @property
    def outlet(self) -> Outlet:
        return self._outlet

    def start(self, spawn: Spawn) -> None:
        """Start forwarding: directly from the outlet, or in a task ``spawn`` owns."""
        self._spawn = spawn
        self._direct = self._writer.direct()
        if self._direct:
            self._outlet.deliver_to(self.pump)
            self.pump()
        else:
            spawn(self.run())

    def close(self) -> None:
        """Stop forwarding and leave the source."""
        self._closed = True
        self.track.unsubscribe(self._outlet)

    def pump(self) -> None:
        """Send every queued frame now (direct mode: called by the outlet on each frame)."""
        if self._closed:
            return
        frames = self._outlet.drain()
        try:
            for index, frame in enumerate(frames):
                if not self._writer.direct():
                    self._outlet.requeue(frames[index:])
                    self._go_async()
                    return
                if self._writer.congested(CONGESTED):
                    self._outlet.skip_to_keyframe()
                    return
                self._send_frame(frame)
        except ConnectionError:
            self._closed = True
            logger.debug("player transport closed while forwarding %s", self.track.codec.kind)
            return
        self._count_sent()

    async def run(self) -> None:
        """Forward with awaited sends until the outlet closes and is not replaced."""
        try:
            while not self._closed:
                outlet = self._outlet
                frames = await outlet.take()
                if not frames:
                    if outlet is self._outlet:
                        return
                    continue
                for frame in frames:
                    for packet in self._packets(frame):
                        await aiortc_seam.send_rtp(self.sender, packet)
                self._count_sent()
        except ConnectionError:
            logger.debug("player transport closed while forwarding %s", self.track.codec.kind)

    def _go_async(self) -> None:
        self._direct = False
        self._outlet.deliver_to(None)
        assert self._spawn is not None
        self._spawn(self.run())

    def _send_frame(self, frame: EncodedFrame) -> None:
        write = self._writer.write
        for packet in self._packets(frame):
            write(packet)

    def _packets(self, frame: EncodedFrame) -> list[bytes]:
        """The player's RTP packets for one frame, kept for retransmission."""
        if frame.epoch != self._epoch:
            self._rebase(frame)
        timestamp = (frame.timestamp + self._offset) & 0xFFFFFFFF
        pack, history = _HEADER.pack, self._history
        first, pt, ssrc, extension = (
            self._first_byte,
            self._payload_type,
            self._ssrc,
            self._extension,
        )
        seq = self._seq
        last = len(frame.payloads) - 1
        packets = []
        for index, payload in enumerate(frame.payloads):
            marked = pt | 0x80 if index == last else pt
            packets.append(pack(first, marked, seq, timestamp, ssrc) + extension + payload)
            history[seq % _HISTORY] = (seq, marked, timestamp, payload)
            seq = (seq + 1) & 0xFFFF
        self._seq = seq
        size = sum(map(len, packets))
        self.packets += len(packets)
        self.octets += size - len(packets) * (12 + len(extension))
        self.track.meter.bytes_out += size
        self.frames += 1
        self._last_ts = timestamp
        self._last_sent = time.monotonic()
        return packets

    def _count_sent(self) -> None:
        if self._last_sent - self._counted_at >= _COUNTERS_EVERY:
            aiortc_seam.count_sent(self.sender, self._last_ts, self.packets, self.octets)
            self._counted_at = self._last_sent

    def _rebase(self, frame: EncodedFrame) -> None:
        if self._epoch:
            elapsed = max(1, round((time.monotonic() - self._last_sent) * self._clock_rate))
        else:
            elapsed = 0
        self._offset = self._last_ts + elapsed - frame.timestamp
        self._epoch = frame.epoch

    def _keyframe_wanted(self) -> None:
        if self.track.codec.kind == "video":
            self.track.request_keyframe()

    async def _retransmit(self, lost: list[int]) -> None:
        """Resend NACKed packets on the original SSRC (we negotiate no RTX stream of our own)."""
        try:
            for seq in lost:
                kept = self._history[seq % _HISTORY]
                if kept is None or kept[0] != seq:
                    continue
                _, marked, timestamp, payload = kept
                header = _HEADER.pack(self._first_byte, marked, seq, timestamp, self._ssrc)
                packet = header + self._extension + payload
                if self._direct:
                    self._writer.write(packet)
                else:
                    await aiortc_seam.send_rtp(self.sender, packet)
        except ConnectionError:
            logger.debug("player transport closed before a retransmission")
