"""Real aiortc publishers and players for node-process tests, behind real WHIP/WHEP clients.

``Peers`` opens them and closes everything it opened, in reverse order. A
publisher keeps every encoded video frame it sent, so players' frames can be
compared byte for byte. ``PublisherProcess`` is ``tierstream publish`` in a
process of its own, for tests whose own process must stay quiet meanwhile
(hypothesis checks that nothing else touches ``random`` while it draws).
"""

from __future__ import annotations

import asyncio
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.streams.whip_client import WhipClient
from media.contrib.client import Player, Publisher, TrackReport
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack, VideoSettings
from tests.support import REPO
from tests.support.processes import stop_process
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
        verify: ssl.SSLContext | bool = True,
        size: tuple[int, int, int] | None = None,
    ) -> Published:
        """``size``: (width, height, fps) instead of 640x360 at 30 fps (``scaled``)."""
        sent: list[bytes] = []
        settings = VideoSettings(mime_type=mime_type, keyframe_interval_s=keyframe_interval_s)
        if size is not None:
            settings = settings.scaled(*size)
        video = SyntheticVideoTrack(settings, on_frame=sent.append)
        publisher = Publisher([video, SyntheticAudioTrack()])
        client = WhipClient(url, headers=headers, verify=verify)
        self._opened += [publisher, client]
        await publisher.start(client.exchange)
        return Published(publisher, client, sent)

    async def play(
        self,
        url: str,
        keep_frames: bool = False,
        headers: dict[str, str] | None = None,
        verify: ssl.SSLContext | bool = True,
        kinds: Sequence[str] = ("video", "audio"),
        timeout_s: float = 10.0,
    ) -> Playing:
        """``timeout_s``: per HTTP phase; the answer to a cold node's first play waits for
        its pull, up to the node's own 10 s bound."""
        player = Player(kinds, keep_frames=keep_frames)
        client = WhipClient(url, headers=headers, timeout=timeout_s, verify=verify)
        self._opened += [player, client]
        await player.play(client.exchange)
        return Playing(player, client)

    async def close(self) -> None:
        for item in reversed(self._opened):
            await item.close()


class PublisherProcess:
    """``tierstream publish --whip <url>``: the synthetic stream, from a process of its own.

    Started and stopped by its PID; it exits by itself when its connection
    fails or closes, so ``connected`` is whether it still runs.
    """

    def __init__(self, whip_url: str, output: Path, arguments: Sequence[str] = ()) -> None:
        """``arguments``: more of ``tierstream publish``'s, e.g. ``--size 160x96 --fps 15``."""
        self.whip_url = whip_url
        self.output = output
        self._arguments = tuple(arguments)
        self.process: subprocess.Popen[bytes] | None = None
        self.location = ""

    def start(self, timeout_s: float = 30.0) -> PublisherProcess:
        """Start, and wait until it published (it prints its session's Location); a loaded
        machine takes seconds to import aiortc, as for a node (``NodeProcess.start``)."""
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cluster",
                    "publish",
                    "--whip",
                    self.whip_url,
                    *self._arguments,
                ],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            published = re.search(r"^publishing .* to (\S+)$", self.text(), re.MULTILINE)
            if published:
                self.location = published.group(1)
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the publisher did not publish in {timeout_s} s:\n{self.text()}")

    @property
    def connected(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def text(self) -> str:
        return self.output.read_text("utf-8", errors="replace") if self.output.exists() else ""

    def stop(self, timeout_s: float = WAIT) -> None:
        """SIGINT by PID (it DELETEs its session as it leaves), a bounded wait, then SIGKILL."""
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, signal.SIGINT, timeout_s)

    def kill(self) -> None:
        """SIGKILL by PID: the publisher vanishes without a word."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(5)


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
