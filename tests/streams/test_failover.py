"""Failover under the faults that used to break it, on real node processes.

A frozen secondary origin (SIGSTOP: still listed alive, its sockets accepting,
nothing answering), a main origin killed and its stream published again on a
node that holds it for its players, and an edge killed and restarted.
"""

from __future__ import annotations

import asyncio
import time

from cluster.registry import Registry
from cluster.types import NodeGroup, StreamId
from tests.support.cluster import (
    S1,
    ClusterFactory,
    Pauses,
    edges,
    get_json,
    publish_when_free,
    whep,
    whip,
)
from tests.support.peers import Peers
from tests.support.waits import eventually

US = NodeGroup("us")


async def test_a_frozen_secondary_origin_is_replaced_fast_and_learns_it_lost_the_role(
    make_cluster: ClusterFactory, peers: Peers, postgres_registry: Registry
) -> None:
    nodes = make_cluster("eu-1", "us-1", "us-2")
    await peers.publish(whip(nodes["eu-1"]))
    await (await peers.play(whep(nodes["us-1"]))).frames(5)
    watching = await peers.play(whep(nodes["us-2"]))
    await watching.frames(5)
    assert ("us-2", "us-1") in edges(await postgres_registry.relay_tree(S1))
    pauses = Pauses(watching)
    try:
        nodes["us-1"].freeze()
        frozen_at = time.monotonic()
        await watching.frames(watching.received + 5, timeout_s=8)
        gap = pauses.longest(frozen_at - 1)
        assert gap < 4.5, f"players of the frozen node's downstream waited {gap:.1f} s"
        secondary = await postgres_registry.secondary_origin(S1, US)
        assert secondary is not None and (secondary.node_id, secondary.epoch) == ("us-2", 2)
        # closing the pull from the frozen node (its DELETE times out) must not hold up
        # the new holder's renewals: the role never lapses while the old holder sleeps
        lapses = await role_lapses(postgres_registry, until=frozen_at + 8)
        assert not lapses, f"nobody held the role at {lapses} s"

        nodes["us-1"].thaw()
        woken_at = time.monotonic()

        async def moved_below() -> bool:
            return ("us-1", "us-2") in edges(await postgres_registry.relay_tree(S1))

        await eventually(moved_below, "the woken node pulling from the new secondary origin")
        await asyncio.sleep(max(0.0, woken_at + 4 - time.monotonic()))
        assert pauses.longest(woken_at) < 1.5, "a second gap when the frozen node woke"
    finally:
        await pauses.close()
    log = nodes["us-1"].log_text()
    assert "lost the secondary origin of s1 in us (epoch 1)" in log


async def role_lapses(registry: Registry, until: float) -> list[float]:
    """Read us's secondary origin of s1 every 50 ms until ``until`` (monotonic); the
    moments (seconds from the start) at which nobody held it."""
    started, lapses = time.monotonic(), []
    while time.monotonic() < until:
        if await registry.secondary_origin(S1, US) is None:
            lapses.append(round(time.monotonic() - started, 2))
        await asyncio.sleep(0.05)
    return lapses


async def test_a_stream_is_published_again_on_the_node_that_holds_it_for_its_players(
    make_cluster: ClusterFactory, peers: Peers, postgres_registry: Registry
) -> None:
    nodes = make_cluster("eu-1", "eu-2", "us-1")
    await peers.publish(whip(nodes["eu-1"]))
    here = await peers.play(whep(nodes["eu-2"]))
    far = await peers.play(whep(nodes["us-1"]))
    for playing in (here, far):
        await playing.frames(5)

    nodes["eu-1"].kill()
    await publish_when_free(peers, whip(nodes["eu-2"]), within_s=8)

    for playing in (here, far):
        await playing.frames(playing.received + 5, timeout_s=20)
    assert here.player.pc.connectionState == "connected", "the held player was kept"
    stream = await postgres_registry.stream(S1)
    assert stream is not None and (stream.origin_node, stream.state) == ("eu-2", "live")
    tree = await postgres_registry.relay_tree(S1)
    assert not any(down == "eu-2" for down, _ in edges(tree)), "eu-2 pulls no more"
    assert "takes s1 over" in nodes["eu-2"].log_text()


async def test_a_restarted_edge_leaves_no_phantom_players(
    make_cluster: ClusterFactory, peers: Peers, postgres_registry: Registry
) -> None:
    nodes = make_cluster("eu-1", "eu-2")
    await peers.publish(whip(nodes["eu-1"]))
    await (await peers.play(whep(nodes["eu-1"]))).frames(5)
    await (await peers.play(whep(nodes["eu-2"]))).frames(5)
    broadcast = f"{nodes['eu-1'].url}/LiveApp/rest/v2/broadcasts/{S1}"

    async def counted(players: int) -> bool:
        return bool((await get_json(broadcast))["webRTCViewerCount"] == players)

    await eventually(lambda: counted(2), "both players counted")

    nodes["eu-2"].kill()
    nodes["eu-2"].start()

    await eventually(lambda: counted(1), "only the player still connected counted")
    topology = await get_json(f"{nodes['eu-2'].url}/rest/v2/streams/{S1}/topology")
    assert topology["totals"]["players"] == 1
    assert [entry["node"] for entry in topology["nodes"]] == ["eu-1"]
    await asyncio.sleep(1.5)  # several heartbeats later, still exact
    assert await counted(1)
    tree = await postgres_registry.relay_tree(StreamId(S1))
    assert edges(tree) == set()
