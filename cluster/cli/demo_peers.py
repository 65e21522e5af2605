"""The demo's synthetic publisher and players, each kept connected by its own small loop.

The publisher sends the test pattern and tone over WHIP to a node of its
region; when that node dies it publishes the same stream again on the next
node of the region (players held through the main origin's grace resume).
Players count frames without decoding; one whose node stops sending for a
few seconds, or refuses it, is re-opened on the same node until it plays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from cluster.cli.demo_nodes import DemoNode
from cluster.streams.whip_client import WhipClient
from media.contrib.client import Player, Publisher, TrackReport
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack, VideoSettings

logger = logging.getLogger(__name__)

APP = "LiveApp"
RETRY_S = 2.0
SILENCE_S = 5.0
"""A player that received nothing for this long is re-opened (its node died or dropped it)."""
PUBLISHER_SILENCE_S = 3.0


class DemoPublisher:
    """Publishes ``stream`` on the first running node of ``candidates``, again after a loss."""

    def __init__(self, stream: str, candidates: Sequence[DemoNode]) -> None:
        self.stream = stream
        self._candidates = tuple(candidates)
        self.node: DemoNode | None = None
        self.publishing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="demo publisher")

    async def close(self) -> None:
        await _cancel(self._task)

    async def _run(self) -> None:
        turn = 0
        while True:
            node = self._candidates[turn % len(self._candidates)]
            turn += 1
            if node.running:
                await self._publish_on(node)
            await asyncio.sleep(RETRY_S / len(self._candidates))

    async def _publish_on(self, node: DemoNode) -> None:
        publisher = Publisher([SyntheticVideoTrack(VideoSettings()), SyntheticAudioTrack()])
        client = WhipClient(f"{node.url}/{APP}/whip/{self.stream}")
        try:
            await publisher.start(client.exchange)
            self.node = node
            self.publishing.set()
            logger.info("publishing %s on %s", self.stream, node.name)
            lost = asyncio.Event()

            @publisher.pc.on("connectionstatechange")
            def _changed() -> None:
                if publisher.pc.connectionState in ("failed", "closed"):
                    lost.set()

            while node.running and not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), 0.5)
        except Exception as error:  # any refusal or transport error: try again later
            logger.info("publishing %s on %s failed: %s", self.stream, node.name, error)
        finally:
            self.node = None
            self.publishing.clear()
            with contextlib.suppress(Exception):
                await client.close()
            await publisher.close()


class DemoPlayer:
    """One player on one node, re-opened whenever it stops receiving."""

    def __init__(self, stream: str, node: DemoNode) -> None:
        self.stream = stream
        self.node = node
        self.frames = 0
        """Video frames received over every session of this player."""
        self.last_frame_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def receiving(self) -> bool:
        return self.last_frame_at is not None and time.monotonic() - self.last_frame_at < 2.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"demo player on {self.node.name}")

    async def close(self) -> None:
        await _cancel(self._task)

    async def _run(self) -> None:
        while True:
            if self.node.running:
                await self._play_once()
            await asyncio.sleep(RETRY_S)

    async def _play_once(self) -> None:
        player = Player()
        client = WhipClient(f"{self.node.url}/{APP}/whep/{self.stream}")
        counted = 0
        opened_at = time.monotonic()
        try:
            await player.play(client.exchange)
            while not player.ended.is_set():
                await asyncio.sleep(0.5)
                frames = player.tracks.get("video", TrackReport()).frames
                now = time.monotonic()
                if frames > counted:
                    self.frames += frames - counted
                    counted = frames
                    self.last_frame_at = now
                if now - max(self.last_frame_at or 0.0, opened_at) > SILENCE_S:
                    return
        except Exception as error:  # a refusal (stream not live yet, node full) or a dead node
            logger.debug("player on %s: %s", self.node.name, error)
        finally:
            with contextlib.suppress(Exception):
                await client.close()
            await player.close()


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
