"""Real aiortc publishers and players for node-process tests, behind real WHIP/WHEP clients.

``Peers`` opens them and closes everything it opened, in reverse order. A
publisher keeps every encoded video frame it sent, so players' frames can be
compared byte for byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from cluster.streams.whip_client import WhipClient
from media.contrib.client import Player, Publisher, TrackReport
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack, VideoSettings
from tests.support.waits import WAIT


@dataclass
class Published:
    publisher: Publisher
    client: WhipClient
    sent: list[bytes] = field(default_factory=list)


@dataclass
class Playing:
    player: Player
    client: WhipClient

    async def frames(self, count: int, kind: str = "video", timeout_s: float = WAIT) -> TrackReport:
        async with asyncio.timeout(timeout_s):
            return await self.player.wait_for_frames(kind, count)

    @property
    def received(self) -> int:
        return self.player.tracks.get("video", TrackReport()).frames


class Peers:
    def __init__(self) -> None:
        self._opened: list[Any] = []

    async def publish(
        self,
        url: str,
        mime_type: str = "video/VP8",
        keyframe_interval_s: float = 1.0,
        headers: dict[str, str] | None = None,
    ) -> Published:
        sent: list[bytes] = []
        video = SyntheticVideoTrack(
            VideoSettings(mime_type=mime_type, keyframe_interval_s=keyframe_interval_s),
            on_frame=sent.append,
        )
        publisher = Publisher([video, SyntheticAudioTrack()])
        client = WhipClient(url, headers=headers)
        self._opened += [publisher, client]
        await publisher.start(client.exchange)
        return Published(publisher, client, sent)

    async def play(
        self, url: str, keep_frames: bool = False, headers: dict[str, str] | None = None
    ) -> Playing:
        player = Player(keep_frames=keep_frames)
        client = WhipClient(url, headers=headers)
        self._opened += [player, client]
        await player.play(client.exchange)
        return Playing(player, client)

    async def close(self) -> None:
        for item in reversed(self._opened):
            await item.close()


def trickling(
    client: WhipClient, patched: list[int], tag: dict[str, str]
) -> Callable[[str], Awaitable[str]]:
    """An exchange as Medooze and Eyevinn clients do it: POST the offer without candidates,
    then PATCH them to the session (``tag``: ``{"If-Match": ...}`` or ``{"ETag": ...}``);
    each PATCH status goes to ``patched``."""

    async def exchange(offer: str) -> str:
        lines = offer.splitlines()
        candidates = [line for line in lines if line.startswith("a=candidate:")]
        bare = [line for line in lines if not line.startswith(("a=candidate:", "a=end-of-cand"))]
        answer = await client.exchange("\r\n".join(bare) + "\r\n")
        ice = [line for line in lines if line.startswith(("a=ice-ufrag:", "a=ice-pwd:"))][:2]
        fragment = [*ice, "m=audio 9 RTP/AVP 0", "a=mid:0", *candidates, "a=end-of-candidates"]
        assert client.location is not None
        async with httpx.AsyncClient() as http:
            reply = await http.patch(
                client.location,
                content="\r\n".join(fragment) + "\r\n",
                headers={"Content-Type": "application/trickle-ice-sdpfrag", **tag},
            )
        patched.append(reply.status_code)
        return answer

    return exchange


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    opened = Peers()
    yield opened
    await opened.close()
