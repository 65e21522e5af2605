"""A player in its own process, for a test that freezes it (SIGSTOP) mid-stream.

Signalling runs over stdin/stdout, one JSON object per line: it prints
``{"offer": sdp}``, reads ``{"answer": sdp}``, prints ``{"receiving": true}``
once frames arrive, then keeps the session open until killed (or 60 s).
"""

from __future__ import annotations

import asyncio
import json
import sys

from media.contrib.client import Player


async def main() -> None:
    player = Player()
    loop = asyncio.get_running_loop()

    async def exchange(offer: str) -> str:
        print(json.dumps({"offer": offer}), flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        return str(json.loads(line)["answer"])

    await player.play(exchange)
    await asyncio.wait_for(player.wait_for_frames("video", 10), 10)
    print(json.dumps({"receiving": True}), flush=True)
    await asyncio.sleep(60)


if __name__ == "__main__":
    asyncio.run(main())
