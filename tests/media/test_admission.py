"""The handshake queue: joins wait their turn, a few at a time, instead of being refused
or all handshaking at once on the loop the forwarding needs (``media.admission``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from media import admission
from media.admission import HandshakeQueue
from media.errors import Overloaded
from tests.media.conftest import EngineFactory, Publish, Watch
from tests.support.waits import WAIT


async def test_turns_beyond_the_slots_wait_in_order_and_pass_straight_on() -> None:
    queue = HandshakeQueue(slots=2, wait_s=WAIT)
    first, second = await queue.admit(), await queue.admit()
    order: list[int] = []

    async def later(index: int) -> admission.Turn:
        turn = await queue.admit()
        order.append(index)
        return turn

    waiting = [asyncio.ensure_future(later(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert queue.active == 2 and queue.waiting == 3 and order == []

    first.done()
    first.done()  # twice is harmless: one slot back, not two
    third = await waiting[0]
    assert order == [0] and queue.active == 2 and queue.waiting == 2
    second.done()
    third.done()
    fourth, fifth = await waiting[1], await waiting[2]
    assert order == [0, 1, 2] and queue.waiting == 0
    fourth.done()
    fifth.done()
    assert queue.active == 0


async def test_a_downstream_node_goes_ahead_of_the_waiting_players() -> None:
    queue = HandshakeQueue(slots=1, wait_s=WAIT)
    held = await queue.admit()
    order: list[str] = []

    async def later(name: str, *, first: bool = False) -> None:
        turn = await queue.admit(first=first)
        order.append(name)
        turn.done()

    joins = [asyncio.ensure_future(later(f"player {i}")) for i in range(3)]
    await asyncio.sleep(0)
    joins += [asyncio.ensure_future(later(f"downstream {i}", first=True)) for i in range(2)]
    await asyncio.sleep(0)
    assert queue.waiting == 5

    held.done()
    await asyncio.wait_for(asyncio.gather(*joins), WAIT)
    assert order == ["downstream 0", "downstream 1", "player 0", "player 1", "player 2"]
    assert queue.active == 0 and queue.waiting == 0


@pytest.mark.parametrize("first", [False, True], ids=["a player", "a downstream node"])
async def test_a_turn_that_does_not_come_in_time_is_a_refusal_that_says_why(first: bool) -> None:
    queue = HandshakeQueue(slots=1, wait_s=0.05)
    held = await queue.admit()
    with pytest.raises(Overloaded, match=r"1 players are handshaking .* waited 0.05 s"):
        await queue.admit(first=first)
    assert queue.waiting == 0, "a refused player leaves the queue"
    held.done()
    (await queue.admit()).done()
    assert queue.active == 0


async def test_a_waiting_join_that_is_cancelled_leaves_the_queue() -> None:
    queue = HandshakeQueue(slots=1, wait_s=WAIT)
    held = await queue.admit()
    gone = asyncio.ensure_future(queue.admit())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert queue.waiting == 0
    held.done()
    assert queue.active == 0, "the freed slot went to nobody, not to the cancelled join"


async def test_a_turn_held_by_a_player_that_never_connects_ends_by_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admission, "HOLD_S", 0.05)
    queue = HandshakeQueue(slots=1, wait_s=WAIT)
    await queue.admit()  # never done()
    (await queue.admit()).done()
    assert queue.active == 0


async def test_handshaking_covers_a_turn_held_at_any_time_since() -> None:
    queue = HandshakeQueue(slots=1, wait_s=WAIT)
    before = time.monotonic()
    assert not queue.handshaking(before)
    turn = await queue.admit()
    assert queue.handshaking(before)
    turn.done()
    assert queue.handshaking(before), "it was held during the interval"
    assert not queue.handshaking(time.monotonic() + 1)


async def test_players_beyond_the_slots_all_connect_in_turn(
    make_engine: EngineFactory, publish: Publish, watch: Watch
) -> None:
    engine = make_engine(handshake_slots=1)
    await publish(engine)
    players = await asyncio.gather(*(watch(engine) for _ in range(3)))
    for player in players:
        await player.frames("video", 1)
    assert engine.stats().players == 3
