"""Nodes in the registry: registration, heartbeats, liveness, drain, listing."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, timedelta

import pytest

from cluster.errors import RegistryUnavailable
from cluster.registry import Registry
from cluster.types import NodeGroup, NodeId, NodeLoad
from tests.support.factories import node_info

BUSY = NodeLoad(
    cpu=0.25,
    memory=0.5,
    players=12,
    publishers=1,
    pulls=2,
    bitrate_in_kbps=2500,
    bitrate_out_kbps=30_000,
)


async def test_registered_node_is_listed_serving_with_its_capacity(registry: Registry) -> None:
    info = node_info("node-a", "eu", cores=8)
    before = await registry.now()

    record = await registry.register(info)

    assert record.id == "node-a"
    assert record.node_group == "eu"
    assert record.public_url == info.public_url
    assert record.internal_url == info.internal_url
    assert record.state == "serving"
    assert record.capacity == info.capacity
    assert record.load == NodeLoad()
    assert record.heartbeat_at.tzinfo == UTC
    assert before <= record.heartbeat_at == record.registered_at <= await registry.now()
    assert await registry.live_nodes() == [record]
    assert await registry.count_live_nodes() == 1
    assert await registry.node(NodeId("node-a")) == record


async def test_heartbeat_records_load_and_a_new_group(registry: Registry) -> None:
    registered = await registry.register(node_info("node-a", "eu"))

    assert await registry.heartbeat(NodeId("node-a"), NodeGroup("us"), BUSY) is True

    [listed] = await registry.live_nodes()
    assert listed.node_group == "us"
    assert listed.load == BUSY
    assert listed.heartbeat_at >= registered.heartbeat_at
    assert listed.registered_at == registered.registered_at


async def test_heartbeat_of_an_unknown_node_asks_it_to_register(registry: Registry) -> None:
    assert await registry.heartbeat(NodeId("ghost"), NodeGroup("eu"), BUSY) is False
    assert await registry.node(NodeId("ghost")) is None


async def test_silent_node_is_not_listed_after_dead_after(registry_url: str) -> None:
    registry = await Registry.connect(registry_url, dead_after_s=0.5)
    try:
        await registry.register(node_info("silent"))
        await registry.register(node_info("chatty"))
        for _ in range(4):
            await asyncio.sleep(0.2)
            assert await registry.heartbeat(NodeId("chatty"), NodeGroup("eu"), NodeLoad())

        assert [n.id for n in await registry.live_nodes()] == ["chatty"]
        assert await registry.count_live_nodes() == 1
        silent = await registry.node(NodeId("silent"))
        assert silent is not None
        assert await registry.now() - silent.heartbeat_at > timedelta(seconds=0.5)
    finally:
        await registry.close()


async def test_restarted_node_takes_its_row_back(registry: Registry) -> None:
    first = await registry.register(node_info("node-a", "eu"))
    await registry.heartbeat(NodeId("node-a"), NodeGroup("eu"), BUSY)
    await registry.drain(NodeId("node-a"))

    again = await registry.register(node_info("node-a", "us", cores=16))

    assert again.state == "serving"
    assert again.node_group == "us"
    assert again.capacity.cores == 16
    assert again.load == NodeLoad()
    assert again.registered_at >= first.registered_at
    assert await registry.live_nodes() == [again]


async def test_drained_node_stays_listed_as_draining(registry: Registry) -> None:
    await registry.register(node_info("node-a"))

    await registry.drain(NodeId("node-a"))
    assert await registry.heartbeat(NodeId("node-a"), NodeGroup("eu"), BUSY)

    [listed] = await registry.live_nodes()
    assert listed.state == "draining"


async def test_deregistered_node_is_gone_and_its_heartbeat_refused(registry: Registry) -> None:
    await registry.register(node_info("node-a"))
    await registry.register(node_info("node-b"))

    await registry.deregister(NodeId("node-a"))
    await registry.deregister(NodeId("node-a"))

    assert [n.id for n in await registry.live_nodes()] == ["node-b"]
    assert await registry.node(NodeId("node-a")) is None
    assert await registry.heartbeat(NodeId("node-a"), NodeGroup("eu"), BUSY) is False


async def test_listing_pages_are_ordered_by_group_then_id(registry: Registry) -> None:
    for name, group in [("n3", "us"), ("n1", "us"), ("n2", "eu"), ("n0", "ap"), ("n4", "eu")]:
        await registry.register(node_info(name, group))

    everyone = [(n.node_group, n.id) for n in await registry.live_nodes()]
    pages = [await registry.live_nodes(offset, 2) for offset in (0, 2, 4)]

    assert everyone == [("ap", "n0"), ("eu", "n2"), ("eu", "n4"), ("us", "n1"), ("us", "n3")]
    assert [(n.node_group, n.id) for page in pages for n in page] == everyone
    assert [len(page) for page in pages] == [2, 2, 1]
    assert await registry.live_nodes(offset=5) == []


async def test_negative_pages_are_refused(registry: Registry) -> None:
    with pytest.raises(ValueError, match="negative"):
        await registry.live_nodes(offset=-1)


async def test_closed_registry_refuses_work_and_closes_twice(registry_url: str) -> None:
    registry = await Registry.connect(registry_url)
    await registry.close()
    await registry.close()

    with pytest.raises(RegistryUnavailable, match="closed"):
        await registry.live_nodes()


async def test_unreachable_postgres_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/registry"

    with pytest.raises(RegistryUnavailable, match="registry could not"):
        await asyncio.wait_for(Registry.connect(url), timeout=15)


async def test_database_without_schema_is_unavailable(database_url: str) -> None:
    registry = await Registry.connect(database_url)
    try:
        with pytest.raises(RegistryUnavailable, match="list live nodes"):
            await registry.live_nodes()
    finally:
        await registry.close()


@pytest.mark.parametrize(
    "url",
    ["mysql://127.0.0.1/registry", "sqlite+aiosqlite://", "not a url"],
    ids=["other database", "in-memory sqlite", "garbage"],
)
async def test_unsupported_url_is_refused_by_name(url: str) -> None:
    with pytest.raises(ValueError, match="registry URL"):
        await Registry.connect(url)
