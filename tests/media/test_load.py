"""Overload: a node whose event loop has no time left refuses new players, then sheds
the newest ones rather than letting every player's picture fall apart together."""

from __future__ import annotations

import asyncio

import pytest

from media.errors import Overloaded
from tests.media.conftest import EngineFactory, Events, Publish, Watch
from tests.support.waits import WAIT


async def test_a_busy_node_refuses_new_players_then_sheds_the_newest_first(
    make_engine: EngineFactory, events: Events, publish: Publish, watch: Watch
) -> None:
    # Any work at all is over this limit: the loop counts as busy from its first sample,
    # a second after the first player joined.
    engine = make_engine(busy_limit=1e-9)
    await publish(engine)
    older = await watch(engine)
    newer = await watch(engine)
    await newer.frames("video", 1)
    for _ in range(round(WAIT / 0.1)):  # until the first sample
        if engine.stats().loop_busy > 0:
            break
        await asyncio.sleep(0.1)

    with pytest.raises(Overloaded, match="overloaded"):
        await watch(engine)
    await events.wait_for("session_ended", newer.session_id)
    assert ("session_ended", older.session_id) not in events.history, "the newest goes first"
    await events.wait_for("session_ended", older.session_id)
    assert engine.stats().players == 0 and engine.has_stream("s1"), "players go, the stream stays"
