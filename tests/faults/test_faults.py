"""Fault injection on real node processes: each role killed and frozen, the registry taken
away, a node restarted over and over. Whatever breaks, no player of another node is
dropped, nothing is left stuck in the registry, and every count is exact once it settles.

The cluster and its roles are in ``conftest.py``; what "settled" means is
``tests.support.faults.assert_settled``. The longest pause players saw is printed
(``-s``) for the README's "Failure modes"; it is asserted only loosely, since this
machine is shared and loaded. Whatever blocks (starting a node, halting PostgreSQL) runs on a
thread: the players live on this event loop and must keep answering their peers meanwhile.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.cluster import publish_when_free, whip
from tests.support.faults import (
    ROLES,
    FaultyStream,
    assert_settled,
    close_all,
    longest,
)
from tests.support.peers import Peers
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.slow

FROZEN_S = 6.0
"""Long enough for the cluster to count a frozen node dead (cluster.nodeDeadTimeoutMs=3000)."""
RESTARTS = 5


def report(fault: str, gap_s: float, settle_s: float) -> None:
    print(f"\nFAULT {fault}: longest pause {gap_s:.2f} s, settled {settle_s:.1f} s later")


KILLED = [role for role in ROLES if role != "main origin"]
"""The main origin's own case is below: its stream must be published again."""


@pytest.mark.parametrize("role", KILLED)
async def test_a_killed_node_drops_no_other_nodes_player(role: str, stream: FaultyStream) -> None:
    victim = stream.nodes[ROLES[role]]
    pauses = stream.watch()
    try:
        victim.kill()
        killed_at = time.monotonic()
        stream.drop_players_of(victim.name)
        settle_s = await assert_settled(stream)
        report(f"{role} SIGKILL", longest(pauses, killed_at - 1), settle_s)
    finally:
        await close_all(pauses)


async def test_a_killed_main_origin_published_again_after_its_restart_drops_no_other_player(
    stream: FaultyStream, peers: Peers
) -> None:
    origin = stream.nodes[ROLES["main origin"]]
    pauses = stream.watch()
    try:
        origin.kill()
        killed_at = time.monotonic()
        stream.drop_players_of(origin.name)
        await asyncio.to_thread(origin.start, 120)
        stream.published = await publish_when_free(peers, whip(origin, stream.stream_id), 30)
        settle_s = await assert_settled(stream)
        report("main origin SIGKILL, published again", longest(pauses, killed_at - 1), settle_s)
    finally:
        await close_all(pauses)


@pytest.mark.parametrize("role", ROLES)
async def test_a_frozen_node_drops_no_player_and_rejoins(role: str, stream: FaultyStream) -> None:
    victim = stream.nodes[ROLES[role]]
    pauses = stream.watch()
    try:
        victim.freeze()
        frozen_at = time.monotonic()
        await asyncio.sleep(FROZEN_S)
        victim.thaw()
        settle_s = await assert_settled(stream)
        # The frozen node's own player waits out the freeze; what counts is everyone else's.
        others = {name: p for name, p in pauses.items() if name != victim.name}
        report(f"{role} SIGSTOP {FROZEN_S:.0f} s", longest(others, frozen_at - 1), settle_s)
    finally:
        await close_all(pauses)


@pytest.mark.parametrize("outage_s", [10, 60], ids=["10 s", "60 s"])
async def test_a_registry_outage_drops_no_player_and_heals(
    outage_s: int, stream: FaultyStream, registry_server: PostgresServer
) -> None:
    pauses = stream.watch()
    try:
        await asyncio.to_thread(registry_server.halt)
        halted_at = time.monotonic()
        await asyncio.sleep(outage_s)
        during = longest(pauses, halted_at - 1)
        await asyncio.to_thread(registry_server.resume)
        settle_s = await assert_settled(stream)
        assert during < 5, f"players paused {during:.1f} s while only the registry was away"
        report(f"registry away {outage_s} s", longest(pauses, halted_at - 1), settle_s)
    finally:
        await close_all(pauses)


async def test_a_node_restarted_five_times_drops_no_other_nodes_player(
    stream: FaultyStream,
) -> None:
    victim = stream.nodes[ROLES["secondary origin"]]
    stream.drop_players_of(victim.name)
    pauses = stream.watch()
    try:
        began = time.monotonic()
        for _ in range(RESTARTS):
            victim.kill()
            await asyncio.to_thread(victim.start, 120)
        settle_s = await assert_settled(stream)
        report(f"secondary origin restarted {RESTARTS}x", longest(pauses, began - 1), settle_s)
    finally:
        await close_all(pauses)
