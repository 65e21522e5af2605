"""The per-stream fan-out: frames in from one upstream, out to many players.

A ``Source`` holds one ``TrackSource`` per track (video, audio). Each track keeps
the frames since its last keyframe (the GOP) so that a joining player starts at
a keyframe, and hands every frame to its players in one native call
(``media._fanout.Fanout.send``, which queues it for the fan-out threads: header
rewrite, SRTP and ``sendmmsg`` per player, without the GIL, while the event
loop goes on). A player whose socket is
full when its packets come skips to the next keyframe (and one is asked for);
nobody else notices, because sending to UDP never waits. A player reached
through a TURN relay, whose send path awaits, reads an ``Outlet`` instead: a
bounded queue, dropping to the next keyframe when it overflows.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections import deque

from media import _fanout, aiortc_seam
from media.codecs import TrackCodec, is_keyframe
from media.frame import EncodedFrame
from media.keyframes import KeyframeRequests
from media.meter import Meter
from media.outlet import Outlet

logger = logging.getLogger(__name__)

_epochs = itertools.count(1)

RATE_WINDOW_S = 2.0


def new_epoch() -> int:
    """A fresh upstream generation number (see ``EncodedFrame.epoch``)."""
    return next(_epochs)


class TrackSource:
    """The fan-out of one track of a stream."""

    def __init__(
        self, codec: TrackCodec, keyframes: KeyframeRequests, meter: Meter, gop_limit: int = 600
    ) -> None:
        self.codec = codec
        self.meter = meter
        self._keyframes = keyframes
        self._gop: list[EncodedFrame] = []
        self._gop_limit = gop_limit
        self._outlets: set[Outlet] = set()
        self._fanout = _fanout.Fanout()
        self._recent: deque[tuple[float, int]] = deque()
        """(arrival, bytes) of the frames of the last ``RATE_WINDOW_S``, for ``bitrate_bps``."""
        self._picture_id = random.randint(0, (1 << 15) - 1)
        self._epoch = 0

    @property
    def players(self) -> int:
        return len(self._outlets) + len(self._fanout)

    def push(self, data: bytes, timestamp: int, epoch: int) -> None:
        """Take one encoded frame from the upstream and hand it to every player.

        Players on plain UDP get it from the fan-out threads, queued in one
        native call (what they sent meanwhile comes back for the meter, and a
        full socket asks for a keyframe); an outlet's failure is logged and
        contained, it must not cost the others this frame.
        """
        mime = self.codec.mime_type
        keyframe = is_keyframe(mime, data)
        payloads = tuple(aiortc_seam.packetize(mime, data, self._picture_id))
        frame = EncodedFrame(
            data=data,
            timestamp=timestamp,
            keyframe=keyframe,
            payloads=payloads,
            epoch=epoch,
            packed=_fanout.Frame(payloads, timestamp, keyframe, epoch),
        )
        self._picture_id = (self._picture_id + 1) % (1 << 15)
        self.meter.bytes_in += len(data)
        now = time.monotonic()
        self._recent.append((now, len(data)))
        while self._recent[0][0] < now - RATE_WINDOW_S:
            self._recent.popleft()
        if epoch != self._epoch:
            self._new_upstream(frame)
        if frame.keyframe:
            self._gop = [frame]
        elif self._gop and len(self._gop) < self._gop_limit:
            self._gop.append(frame)
        elif self._gop:
            logger.debug(
                "%s GOP over %d frames: not cached until the next keyframe", mime, self._gop_limit
            )
            self._gop = []
        sent, overflowed = self._fanout.send(frame.packed)
        self.meter.bytes_out += sent
        if overflowed:
            self._keyframes.request()
        for outlet in self._outlets:
            try:
                outlet.put(frame)
            except Exception:
                logger.exception("a player failed to take a %s frame; it skips to a keyframe", mime)
                outlet.skip_to_keyframe()

    def _new_upstream(self, frame: EncodedFrame) -> None:
        """A new upstream's first frame (a re-pull after failover).

        Its frames cannot follow the old upstream's in a decoder, so the cached
        GOP goes and every player resumes at the new upstream's first keyframe,
        which is asked for at once if this frame is not one.
        """
        if self._epoch:
            self._gop = []
            self._fanout.wait_for_keyframe()
            for outlet in self._outlets:
                outlet.wait_for_keyframe()
            if not frame.keyframe:
                self._keyframes.request()
        self._epoch = frame.epoch

    @property
    def keyframe(self) -> bytes | None:
        """The cached GOP's keyframe, if there is one."""
        return self._gop[0].data if self._gop and self._gop[0].keyframe else None

    def bitrate_bps(self) -> int:
        """The track's bitrate over the last ``RATE_WINDOW_S``."""
        horizon = time.monotonic() - RATE_WINDOW_S
        return int(sum(n for at, n in self._recent if at >= horizon) * 8 / RATE_WINDOW_S)

    def request_keyframe(self) -> None:
        self._keyframes.request()

    def attach(self, slot: _fanout.Slot, limit: int) -> None:
        """Send to a new player's slot from now on, starting at the cached keyframe
        when the cached GOP has at most ``limit`` frames (else at the next one)."""
        gop = [frame.packed for frame in self._gop] if len(self._gop) <= limit else []
        sent, _ = self._fanout.add(slot, gop)
        self.meter.bytes_out += sent
        if self.codec.kind == "video":
            self._keyframes.request()

    def detach(self, slot: _fanout.Slot) -> None:
        """Stop sending to a slot; once this returns nothing is being sent to it."""
        self._fanout.remove(slot)

    def subscribe(self, limit: int) -> Outlet:
        """A new outlet (a TURN player), started at the cached keyframe when it fits."""
        outlet = Outlet(limit, self._keyframes.request)
        if self._gop and len(self._gop) <= limit:
            for frame in self._gop:
                outlet.put(frame)
        if self.codec.kind == "video":
            self._keyframes.request()
        self._outlets.add(outlet)
        return outlet

    def unsubscribe(self, outlet: Outlet) -> None:
        self._outlets.discard(outlet)
        outlet.close()

    def close(self) -> None:
        for outlet in self._outlets:
            outlet.close()
        self._outlets.clear()
        self._gop = []


class Source:
    """Everything a stream's players read from, whoever feeds it."""

    def __init__(
        self,
        stream_id: str,
        codecs: tuple[TrackCodec, ...],
        keyframe_interval: float,
        meter: Meter,
    ) -> None:
        self.stream_id = stream_id
        self.keyframes = KeyframeRequests(keyframe_interval)
        self.tracks = {c.kind: TrackSource(c, self.keyframes, meter) for c in codecs}

    @property
    def codecs(self) -> tuple[TrackCodec, ...]:
        return tuple(track.codec for track in self.tracks.values())

    def close(self) -> None:
        self.keyframes.close()
        for track in self.tracks.values():
            track.close()
