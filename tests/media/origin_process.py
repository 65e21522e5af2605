"""An origin node in its own process, for a test that freezes it (SIGSTOP) mid-stream.

It runs a media engine with a synthetic publisher on stream ``s1``. Signalling
runs over stdin/stdout, one JSON object per line: it prints ``{"ready": true}``
once the stream is live, then answers each ``{"offer": sdp}`` it reads (a
downstream node's pull) with ``{"answer": sdp}``, until killed (or 60 s).
"""

from __future__ import annotations

import asyncio
import json
import sys

from media.config import MediaConfig
from media.contrib.client import LOOPBACK, Publisher
from media.contrib.synthetic import SyntheticAudioTrack, SyntheticVideoTrack, VideoSettings
from media.engine import MediaEngine
from tests.media.conftest import Events


async def main() -> None:
    events = Events()
    engine = MediaEngine(MediaConfig(candidate_addresses=LOOPBACK), events)
    publisher = Publisher([SyntheticVideoTrack(VideoSettings()), SyntheticAudioTrack()])

    async def publish(offer: str) -> str:
        return (await engine.publish("s1", offer)).sdp

    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with asyncio.timeout(60):
        await publisher.start(publish)
        await events.wait_for("stream_started", "s1", ("video/VP8", "audio/opus"))
        print(json.dumps({"ready": True}), flush=True)
        while line := await stdin.readline():
            answer = await engine.play("s1", json.loads(line)["offer"], downstream=True)
            print(json.dumps({"answer": answer.sdp}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
