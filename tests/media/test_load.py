"""Overload: a node whose event loop has no time left refuses new players, then sheds
the newest ones rather than letting every player's picture fall apart together."""

from __future__ import annotations

import asyncio

import pytest

from media.errors import Overloaded
from media.load import BEHIND_BYTES, STALE_S, LoopLoad
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
    for _ in range(round(WAIT / 0.1)):  # until the first sample without handshakes
        if engine.stats().forwarding_busy > 0:
            break
        await asyncio.sleep(0.1)

    with pytest.raises(Overloaded, match="overloaded"):
        await watch(engine)
    downstream = await watch(engine, downstream=True)  # a subtree's pull is never refused
    await events.wait_for("session_ended", newer.session_id)
    assert ("session_ended", older.session_id) not in events.history, "the newest goes first"
    await events.wait_for("session_ended", older.session_id)
    assert engine.stats().players == 0 and engine.has_stream("s1"), "players go, the stream stays"
    assert ("session_ended", downstream.session_id) not in events.history, "players only are shed"


class Clocks:
    """The loop thread's CPU clock, the fan-out workers' and the wall clock, moved by hand."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.fanout = 0.0
        self.now = 100.0

    def second(self, busy: float, fanout: float = 0.0) -> None:
        self.cpu += busy
        self.fanout += fanout
        self.now += 1.0


def sampled(
    handshaking: list[bool],
    busy_seconds: list[int],
    backlog: list[int] | None = None,
    workers: int = 2,
    cores: int = 2,
) -> tuple[LoopLoad, Clocks]:
    clocks = Clocks()
    queued = backlog if backlog is not None else [0]
    load = LoopLoad(
        0.9,
        busy_seconds.append,
        lambda since: handshaking[-1],
        lambda: queued[-1],
        cpu=lambda: clocks.cpu,
        fanout_cpu=lambda: clocks.fanout,
        workers=workers,
        cores=cores,
        clock=lambda: clocks.now,
    )
    load.reset()
    return load, clocks


def test_a_second_of_handshakes_does_not_count_as_forwarding() -> None:
    handshaking, busy = [False], list[int]()
    load, clocks = sampled(handshaking, busy)
    clocks.second(0.4)
    load.sample()
    assert load.share == pytest.approx(0.4) and load.forwarding == pytest.approx(0.4)

    handshaking.append(True)  # a join storm: the loop is full of handshakes
    for _ in range(5):
        clocks.second(0.97)
        load.sample()
    assert load.share == pytest.approx(0.97)
    assert load.forwarding == pytest.approx(0.4) and not load.busy and busy == []


def test_real_overload_is_still_seen_and_counted_second_by_second() -> None:
    handshaking, busy = [False], list[int]()
    load, clocks = sampled(handshaking, busy)
    for _ in range(4):
        clocks.second(0.95)
        load.sample()
    assert load.busy and busy == [1, 2, 3, 4]
    clocks.second(0.5)
    load.sample()
    assert not load.busy and busy == [1, 2, 3, 4], "a second with time left ends the run"


def test_full_fanout_threads_are_overload_while_the_loop_has_time() -> None:
    handshaking, busy = [False], list[int]()
    load, clocks = sampled(handshaking, busy, workers=2, cores=2)
    clocks.second(0.3, fanout=1.2)  # 60 % of each worker, 75 % of the two cores
    load.sample()
    assert load.fanout == pytest.approx(0.6) and not load.busy
    clocks.second(0.2, fanout=1.9)
    load.sample()
    assert load.fanout == pytest.approx(0.95) and load.busy and busy == [1]


def test_the_loop_and_the_workers_on_one_core_fill_it_together() -> None:
    handshaking, busy = [False], list[int]()
    load, clocks = sampled(handshaking, busy, workers=1, cores=1)
    clocks.second(0.45, fanout=0.5)  # neither near the limit alone, the core is full
    load.sample()
    assert load.share < 0.9 and load.fanout < 0.9
    assert load.forwarding == pytest.approx(0.95) and load.busy and busy == [1]


def test_joins_that_never_let_up_count_as_load_after_a_while() -> None:
    handshaking, busy = [True], list[int]()
    load, clocks = sampled(handshaking, busy)
    seconds = 0
    while not load.busy:
        clocks.second(0.95)
        load.sample()
        seconds += 1
        assert seconds <= STALE_S + 1
    assert seconds > STALE_S - 1 and load.forwarding == pytest.approx(0.95)


def test_media_waiting_unread_is_overload_even_while_players_handshake() -> None:
    # The loop is saturated by joins (clients retrying refused joins never let up), so
    # the share of the last quiet second stands in; the ingest socket tells the truth.
    handshaking, busy, backlog = [False], list[int](), [0]
    load, clocks = sampled(handshaking, busy, backlog)
    clocks.second(0.6)
    load.sample()
    handshaking.append(True)
    for queued in (BEHIND_BYTES // 2, BEHIND_BYTES, 2 * BEHIND_BYTES, 3 * BEHIND_BYTES):
        backlog.append(queued)
        clocks.second(1.0)
        load.sample()
    assert load.forwarding == pytest.approx(0.6), "the handshakes' seconds are still masked"
    assert load.busy and load.behind and busy == [1, 2, 3]


def test_a_backlog_shrinking_fast_is_catching_up_not_overload_to_shed_for() -> None:
    # Players were shed; the loop still reads 100 % while it reads the backlog away,
    # which must not shed more of them.
    handshaking, busy, backlog = [False], list[int](), [4 * BEHIND_BYTES]
    load, clocks = sampled(handshaking, busy, backlog)
    clocks.second(1.0)
    load.sample()
    assert busy == [1]
    for queued in (3 * BEHIND_BYTES, 2 * BEHIND_BYTES):
        backlog.append(queued)
        clocks.second(1.0)
        load.sample()
    assert busy == [1], "no busy seconds counted while the backlog drains"
    assert load.busy, "but no new players meanwhile"
    backlog.append(2 * BEHIND_BYTES - 1)  # stuck: the loop is not catching up
    clocks.second(1.0)
    load.sample()
    assert busy == [1, 1]
    backlog.append(0)
    clocks.second(0.5)
    load.sample()
    assert not load.busy and busy == [1, 1]
