"""One-time stream tokens in the registry: spent once, by one caller, before they expire."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from cluster.registry import Registry
from cluster.types import AppName, StreamId

S1, S2 = StreamId("s1"), StreamId("s2")
LIVE = AppName("LiveApp")


async def test_a_token_is_spent_once_for_its_stream_app_and_type(registry: Registry) -> None:
    expires = await registry.now() + timedelta(minutes=1)
    await registry.create_stream_token("t1", S1, LIVE, "play", expires)

    assert not await registry.spend_stream_token("t1", S2, LIVE, "play")
    assert not await registry.spend_stream_token("t1", S1, AppName("Other"), "play")
    assert not await registry.spend_stream_token("t1", S1, LIVE, "publish")
    assert await registry.spend_stream_token("t1", S1, LIVE, "play")
    assert not await registry.spend_stream_token("t1", S1, LIVE, "play")


async def test_an_expired_token_is_refused_and_cleared_by_the_next_one(registry: Registry) -> None:
    now = await registry.now()
    await registry.create_stream_token("old", S1, LIVE, "publish", now + timedelta(seconds=0.3))
    await asyncio.sleep(0.5)

    assert not await registry.spend_stream_token("old", S1, LIVE, "publish")
    await registry.create_stream_token("new", S1, LIVE, "publish", now + timedelta(minutes=1))
    assert not await registry.spend_stream_token("old", S1, LIVE, "publish")


async def test_concurrent_spends_of_one_token_have_exactly_one_winner(registry: Registry) -> None:
    expires = await registry.now() + timedelta(minutes=1)
    await registry.create_stream_token("race", S1, LIVE, "play", expires)

    results = await asyncio.gather(
        *(registry.spend_stream_token("race", S1, LIVE, "play") for _ in range(8))
    )

    assert sorted(results) == [False] * 7 + [True]
