"""An Ant Media WebSocket signalling client for tests and benchmarks, over a real socket.

``Signalling`` speaks the messages of ``@antmedia/webrtc_adaptor`` (the same
shapes, the same order) to ``ws://127.0.0.1:<port>/<app>/websocket``; with
``publish``/``play`` it drives real aiortc peers (``media.contrib.client``)
through them. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from media.contrib.client import Player, Publisher
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack, VideoSettings
from tests.support.waits import WAIT


class Signalling:
    """One signalling socket; messages from the server are queued and awaited by shape."""

    def __init__(self, connection: ClientConnection, ping: bool) -> None:
        self.connection = connection
        self.received: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._read())]
        if ping:
            self._tasks.append(asyncio.create_task(self._ping()))
        self.peers: list[Publisher | Player] = []

    @classmethod
    async def open(
        cls, base_url: str, app: str = "LiveApp", target: str = "origin", ping: bool = True
    ) -> Signalling:
        """Connect; ``ping``: like the SDK, send ``ping`` every second (it does every 3 s)."""
        url = base_url.replace("http://", "ws://") + f"/{app}/websocket?target={target}"
        return await cls.connect(url, ping)

    @classmethod
    async def connect(cls, url: str, ping: bool = True) -> Signalling:
        """Connect to a ``ws://`` URL as given (a ``/route`` answer's ``websocket_url``)."""
        return cls(await websockets.connect(url, open_timeout=WAIT, max_size=None), ping)

    async def _ping(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(1.0)
                await self.send("ping")

    async def _read(self) -> None:
        try:
            async for text in self.connection:
                message = json.loads(text)
                self.received.append(message)
                self._queue.put_nowait(message)
        except websockets.ConnectionClosed:
            pass

    async def send(self, command: str, **fields: Any) -> None:
        await self.connection.send(json.dumps({"command": command, **fields}))

    async def expect(
        self, command: str, definition: str | None = None, timeout_s: float = WAIT
    ) -> dict[str, Any]:
        """The next message of this command (and definition); others before it are skipped."""
        async with asyncio.timeout(timeout_s):
            while True:
                message = await self._queue.get()
                if message["command"] == command and definition in (
                    None,
                    message.get("definition"),
                ):
                    return message

    async def publish(self, stream_id: str, token: str = "") -> Publisher:
        """Publish the synthetic stream as the SDK does; returns once the answer is applied."""
        await self.send("publish", streamId=stream_id, token=token, video=True, audio=True)
        await self.expect("start")
        publisher = Publisher([SyntheticVideoTrack(VideoSettings()), SyntheticAudioTrack()])
        self.peers.append(publisher)

        async def exchange(offer: str) -> str:
            await self.send("takeConfiguration", streamId=stream_id, type="offer", sdp=offer)
            return str((await self.expect("takeConfiguration"))["sdp"])

        await publisher.start(exchange)
        return publisher

    async def play(self, stream_id: str, token: str = "") -> Player:
        """Play as the SDK does (server offer); returns once our answer is sent."""
        await self.send("play", streamId=stream_id, token=token, room="", trackList=[])
        offer = await self.expect("takeConfiguration")
        assert offer["type"] == "offer" and offer["idMapping"], offer
        player = Player()
        self.peers.append(player)
        answer = await player.answer(offer["sdp"])
        await self.send("takeConfiguration", streamId=stream_id, type="answer", sdp=answer)
        return player

    async def closed(self, timeout_s: float = WAIT) -> tuple[int | None, str]:
        """Wait for the server to close the socket: (code, reason)."""
        async with asyncio.timeout(timeout_s):
            await self.connection.wait_closed()
        return self.connection.close_code, self.connection.close_reason or ""

    async def close(self) -> None:
        for peer in reversed(self.peers):
            await peer.close()
        await self.connection.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
