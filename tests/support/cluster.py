"""A cluster of real node processes for stream tests: the factory, and what tests ask of it.

``make_cluster("eu-1", "us-1", ...)`` (a fixture of ``tests/streams/conftest.py``)
starts nodes named after their region on a fresh PostgreSQL registry and kills
them all after the test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from cluster.streams.whip_client import SignallingFailed
from cluster.types import RelayTree, StreamId
from tests.support.nodes import NodeProcess
from tests.support.peers import Peers, Playing, Published

T = TypeVar("T")
S1 = StreamId("s1")
ClusterFactory = Callable[..., dict[str, NodeProcess]]


def whip(node: NodeProcess, stream: str = S1) -> str:
    return f"{node.url}/LiveApp/whip/{stream}"


def whep(node: NodeProcess, stream: str = S1) -> str:
    return f"{node.url}/LiveApp/whep/{stream}"


async def while_refused(
    attempt: Callable[[], Awaitable[T]],
    refused: Callable[[Exception], bool],
    within_s: float,
    pause_s: float,
) -> T:
    """``attempt()`` again, ``pause_s`` apart, while it fails in a way ``refused`` names,
    for up to ``within_s``; any other failure, or a refusal after that, is raised."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not refused(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(pause_s)


async def publish_when_free(peers: Peers, url: str, within_s: float) -> Published:
    """Publish, retrying while the stream's old main origin still holds its lease (409)."""
    return await while_refused(
        lambda: peers.publish(url),
        lambda exc: isinstance(exc, SignallingFailed) and exc.status == 409,
        within_s,
        0.2,
    )


def edges(tree: RelayTree | None) -> set[tuple[str, str]]:
    assert tree is not None
    return {(edge.downstream, edge.upstream) for edge in tree.pulls}


async def get_json(url: str) -> Any:
    async with httpx.AsyncClient() as http:
        return (await http.get(url, timeout=5)).json()


class Pauses:
    """The pauses in a player's video, from its frame count polled every 5 ms.

    ``pauses`` holds (when the pause started, how long it lasted) for every
    stretch without a new frame longer than ``over_s``.
    """

    def __init__(self, playing: Playing, over_s: float = 0.25) -> None:
        self._playing = playing
        self._over_s = over_s
        self.pauses: list[tuple[float, float]] = []
        self._count, self._since = playing.received, time.monotonic()
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.005)
            self._poll()

    def _poll(self) -> None:
        """A pause ends with the first new frame; its length is then known."""
        now = time.monotonic()
        if self._playing.received != self._count:
            if now - self._since > self._over_s:
                self.pauses.append((self._since, now - self._since))
            self._count, self._since = self._playing.received, now

    def longest(self, after: float = 0.0) -> float:
        """The longest pause that started at or after ``after`` (monotonic), in seconds."""
        return max((length for start, length in self.pauses if start >= after), default=0.0)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        # A frame that came since the last poll (a test that waited for it, then closes
        # at once) still ends its pause.
        self._poll()
