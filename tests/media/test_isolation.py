"""One player's trouble is its own: stalls and upstream switches stay invisible to others."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from media.engine import MediaEngine
from tests.media.conftest import Publish, Watch
from tests.support import REPO
from tests.support.waits import WAIT


async def test_a_player_that_stops_reading_does_not_slow_another(
    engine: MediaEngine, publish: Publish, watch: Watch
) -> None:
    published = await publish(engine)
    healthy = await watch(engine)
    stalled = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.media.stalled_player",
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert stalled.stdin is not None and stalled.stdout is not None
    try:
        offer = json.loads(await asyncio.wait_for(stalled.stdout.readline(), WAIT))["offer"]
        answer = await engine.play("s1", offer)
        stalled.stdin.write(json.dumps({"answer": answer.sdp}).encode() + b"\n")
        await stalled.stdin.drain()
        assert json.loads(await asyncio.wait_for(stalled.stdout.readline(), WAIT))["receiving"]

        os.kill(stalled.pid, signal.SIGSTOP)
        sent_before = len(published.sent)
        got_before = healthy.player.tracks["video"].frames
        await asyncio.sleep(2.0)
        sent = len(published.sent) - sent_before
        got = healthy.player.tracks["video"].frames - got_before
    finally:
        stalled.kill()
        await asyncio.wait_for(stalled.wait(), WAIT)

    assert engine.stats().players == 2, "the stalled player is still a player"
    assert sent >= 10, "the publisher kept sending during the stall"
    assert got >= sent - 2, f"the healthy player got {got} of {sent} frames"
