"""The fault suite's cluster: four real nodes on a private PostgreSQL, one stream per test.

The nodes and the PostgreSQL server live for the module (starting four nodes costs tens
of seconds on a loaded machine); each test gets a fresh stream and players, and starts
by bringing back whatever the previous test killed, froze or halted.

``cluster.maxDownstreams=1`` makes every role of the issue exist with four nodes::

    eu-1 main origin ──▶ us-1 secondary origin ──▶ us-2 tree parent ──▶ us-3 edge

each with one player of its own, and the publisher on eu-1.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cluster.registry import Registry
from cluster.registry.migrate import migrate
from tests.support.cluster import whep, whip
from tests.support.faults import NODES, ROLES, FaultyStream, held_tree, restart_missing
from tests.support.nodes import NodeProcess, start_all
from tests.support.peers import Peers
from tests.support.postgres import PostgresServer
from tests.support.registry import connected
from tests.support.waits import eventually

NODE_CONFIG = {
    "cluster.maxDownstreams": "1",
    # The default, not the tests' 2 s: at a load average of 15 and more, a beat 2 s late made
    # a main origin count as dead while the stream was being set up.
    "cluster.nodeDeadTimeoutMs": "3000",
    # Long enough for a killed main origin to be started again and published on.
    "cluster.originGraceMs": "60000",
}
SETUP_S = 60.0
"""How long a fresh stream may take to reach all four nodes on a loaded machine."""

_streams = itertools.count(1)


@pytest.fixture(scope="module")
def registry_server() -> Iterator[PostgresServer]:
    """The module's own PostgreSQL: the registry-outage tests take it away."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fault_registry_url(registry_server: PostgresServer) -> str:
    url = asyncio.run(registry_server.create_database(f"faults_{os.getpid()}"))
    asyncio.run(migrate(url))
    return url


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory, fault_registry_url: str
) -> Iterator[dict[str, NodeProcess]]:
    workdir: Path = tmp_path_factory.mktemp("faults")
    started = {
        name: NodeProcess(workdir, name, name.split("-")[0], fault_registry_url, **NODE_CONFIG)
        for name in NODES
    }
    try:
        start_all(list(started.values()), timeout_s=90)
        yield started
    finally:
        for node in started.values():
            node.thaw_if_running()
            node.stop()


@pytest.fixture
async def fault_registry(fault_registry_url: str) -> AsyncIterator[Registry]:
    async with connected(fault_registry_url) as registry:
        yield registry


@pytest.fixture
async def stream(
    nodes: dict[str, NodeProcess],
    registry_server: PostgresServer,
    fault_registry: Registry,
    peers: Peers,
) -> AsyncIterator[FaultyStream]:
    """A new stream published on eu-1 and played on every node, its tree as drawn above."""
    if registry_server.pid is None:
        registry_server.resume()
    restart_missing(nodes)

    async def all_serving() -> bool:
        alive = {str(n.id) for n in await fault_registry.live_nodes() if n.state == "serving"}
        return alive >= set(nodes)

    # A node the previous fault froze may still be registering again after it woke.
    await eventually(all_serving, "every node serving in the registry", SETUP_S)
    stream_id = f"f{next(_streams)}"
    published = await peers.publish(whip(nodes["eu-1"], stream_id))
    players = {}
    for name in NODES:  # one at a time: each join decides the next one's upstream
        players[name] = await peers.play(whep(nodes[name], stream_id))
        await players[name].frames(5, timeout_s=SETUP_S)
    faulty = FaultyStream(stream_id, nodes, fault_registry, published, players)
    await eventually(lambda: held_tree(faulty, ROLES), "the relay tree of four roles", SETUP_S)
    try:
        yield faulty
    finally:
        for node in nodes.values():
            node.thaw_if_running()  # a test that failed mid-freeze leaves nothing frozen
        if registry_server.pid is None:
            registry_server.resume()
