"""Reservations: room kept for routed clients, atomic across nodes, lapsing, settled by beats."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from sqlalchemy import update

from cluster.registry import Registry
from cluster.registry.database import open_engine, transactional
from cluster.registry.schema import node
from cluster.types import NodeCapacity, NodeId, NodeLoad
from tests.support.factories import node_info

SMALL = NodeCapacity(cores=2, max_players=5, max_bitrate_kbps=10_000, cpu_limit=80)


async def reserved(registry: Registry, name: str) -> int:
    record = await registry.node(NodeId(name))
    assert record is not None
    return record.reserved


async def test_reservations_fill_the_room_left_by_players(registry: Registry) -> None:
    info = replace(node_info("eu-1"), capacity=SMALL)
    await registry.register(info)
    await registry.heartbeat(info.id, info.node_group, NodeLoad(players=2))
    taken = [await registry.reserve(info.id, 10.0) for _ in range(5)]
    assert taken == [True, True, True, False, False]
    assert await reserved(registry, "eu-1") == 3
    record = await registry.node(info.id)
    assert record is not None and record.capacity.cpu_limit == 80


async def test_arrivals_are_settled_by_the_heartbeat_that_counts_them(registry: Registry) -> None:
    info = replace(node_info("eu-1"), capacity=SMALL)
    await registry.register(info)
    for _ in range(3):
        assert await registry.reserve(info.id, 10.0)
    await registry.heartbeat(info.id, info.node_group, NodeLoad(players=2), arrived=2)
    assert await reserved(registry, "eu-1") == 1
    await registry.heartbeat(info.id, info.node_group, NodeLoad(players=3), arrived=5)
    assert await reserved(registry, "eu-1") == 0
    assert [await registry.reserve(info.id, 10.0) for _ in range(3)] == [True, True, False]


async def test_reservations_lapse(registry: Registry) -> None:
    info = replace(node_info("eu-1"), capacity=SMALL)
    await registry.register(info)
    for _ in range(5):
        assert await registry.reserve(info.id, 0.2)
    assert not await registry.reserve(info.id, 0.2)
    await asyncio.sleep(0.3)
    assert await reserved(registry, "eu-1") == 0
    assert await registry.reserve(info.id, 0.2)
    assert await reserved(registry, "eu-1") == 1


async def test_an_unknown_node_cannot_be_reserved(registry: Registry) -> None:
    assert not await registry.reserve(NodeId("ghost"), 10.0)


async def test_a_burst_from_many_nodes_never_overfills(registry_url: str) -> None:
    """200 reservations from 8 registry clients at once: exactly the room is handed out."""
    clients = [await Registry.connect(registry_url, pool_size=4) for _ in range(8)]
    try:
        target = replace(node_info("eu-1"), capacity=replace(SMALL, max_players=37))
        await clients[0].register(target)
        results = await asyncio.gather(
            *(clients[i % 8].reserve(target.id, 10.0) for i in range(200))
        )
        assert sum(results) == 37
        assert await reserved(clients[0], "eu-1") == 37
    finally:
        for client in clients:
            await client.close()


async def test_reservations_waiting_on_a_heartbeat_see_the_players_it_recorded(
    postgres_url: str,
) -> None:
    """A heartbeat moving four arrivals from reservations to players is still open while
    routers reserve: once it commits they must count its players and its reservations
    both, so one place is left, not five (with the two in different rows, PostgreSQL's
    re-check of a waiting router saw the new reservations but its snapshot's players)."""
    registry = await Registry.connect(postgres_url, pool_size=8)
    engine = open_engine(postgres_url)
    try:
        info = replace(node_info("eu-1"), capacity=SMALL)
        await registry.register(info)
        for _ in range(4):
            assert await registry.reserve(info.id, 60.0)
        async with transactional(engine).begin() as beat:  # Registry.heartbeat, 4 arrivals
            await beat.execute(
                update(node).where(node.c.id == info.id).values(players=4, pending=0)
            )
            racing = [asyncio.create_task(registry.reserve(info.id, 60.0)) for _ in range(4)]
            await asyncio.sleep(0.5)  # every router is waiting on the heartbeat's row now
            assert not any(task.done() for task in racing)
        taken = await asyncio.gather(*racing)
        assert sum(taken) == 1, taken
        record = await registry.node(info.id)
        assert record is not None
        assert (record.load.players, record.reserved) == (4, 1)
    finally:
        await engine.dispose()
        await registry.close()
