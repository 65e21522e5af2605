"""One TURN player's bounded queue of one track's frames."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from media.frame import EncodedFrame


class Outlet:
    """Frames on their way to one player's track, at most ``limit`` of them.

    A player starts at a keyframe. When its queue overflows (it could not keep
    up), it loses the queue, the source is asked for a keyframe, and the player
    resumes at the next one: it sees a short freeze, nobody else sees anything.

    Players on plain UDP need no queue (the native fan-out sends each frame as
    it comes); a player reached through a TURN relay, whose send path awaits,
    reads its frames here with ``take()``.
    """

    def __init__(self, limit: int, on_overflow: Callable[[], None]) -> None:
        self._frames: deque[EncodedFrame] = deque()
        self._limit = limit
        self._on_overflow = on_overflow
        self._ready = asyncio.Event()
        self.waiting_for_keyframe = True
        self.closed = False
        self.overflows = 0

    def put(self, frame: EncodedFrame) -> None:
        if self.closed:
            return
        if self.waiting_for_keyframe:
            if not frame.keyframe:
                return
            self.waiting_for_keyframe = False
        elif len(self._frames) >= self._limit:
            self.skip_to_keyframe()
            if not frame.keyframe:
                return
            self.waiting_for_keyframe = False
        self._frames.append(frame)
        self._ready.set()

    def wait_for_keyframe(self) -> None:
        """Take nothing more until a keyframe (the upstream changed); what is queued stays."""
        self.waiting_for_keyframe = True

    def skip_to_keyframe(self) -> None:
        """Drop what is queued and resume at the next keyframe (which is asked for)."""
        self._frames.clear()
        self.waiting_for_keyframe = True
        self.overflows += 1
        self._on_overflow()

    async def take(self) -> list[EncodedFrame]:
        """Every queued frame, waiting for one; ``[]`` once the outlet is closed."""
        while not self._frames:
            if self.closed:
                return []
            self._ready.clear()
            await self._ready.wait()
        frames = list(self._frames)
        self._frames.clear()
        return frames

    def close(self) -> None:
        self.closed = True
        self._ready.set()
