"""What the registry does for recovery: fenced take-overs, a restarted node's clean slate,
orphans revived by their origin, and ended streams pruned. Both back-ends."""

from __future__ import annotations

import asyncio

from cluster.registry import Registry
from cluster.types import AppName, NodeGroup, NodeId, NodeLoad, StreamId
from tests.support.factories import node_info

S1, S2 = StreamId("s1"), StreamId("s2")
EU, US = NodeGroup("eu"), NodeGroup("us")
A, C, D = NodeId("eu-1"), NodeId("us-1"), NodeId("us-2")
APP = AppName("LiveApp")


async def test_a_term_seen_failing_is_taken_over_at_once_under_the_next_epoch(
    registry: Registry,
) -> None:
    held = await registry.claim_secondary_origin(S1, US, C, lease_s=60)

    taken = await registry.claim_secondary_origin(S1, US, D, lease_s=60, take_over=held.holder)

    assert taken.won is True
    assert (taken.holder.node_id, taken.holder.epoch) == (D, 2)
    assert not await registry.renew_secondary_origin(S1, US, C, 1, 60), "the old term is fenced"


async def test_a_take_over_of_a_term_that_already_changed_hands_is_lost(
    registry: Registry,
) -> None:
    first = await registry.claim_secondary_origin(S1, US, C, lease_s=60)
    second = await registry.claim_secondary_origin(S1, US, D, lease_s=60, take_over=first.holder)

    late = await registry.claim_secondary_origin(
        S1, US, NodeId("us-3"), lease_s=60, take_over=first.holder
    )

    assert late.won is False
    assert late.holder == second.holder


async def test_a_restarted_node_clears_what_its_previous_run_left(registry: Registry) -> None:
    await registry.register(node_info(A, "eu"))
    await registry.register(node_info(C, "us"))
    await registry.claim_stream(S1, APP, A, EU, ("video/VP8",), lease_s=60)
    await registry.claim_stream(S2, APP, C, US, ("video/VP8",), lease_s=60)
    claim = await registry.claim_secondary_origin(S1, US, C, lease_s=60)
    await registry.record_pull(S1, C, A, players=2)
    await registry.record_pull(S2, A, C, players=1)

    await registry.register(node_info(C, "us"))  # us-1 was killed and started again

    tree = await registry.relay_tree(S1)
    assert tree is not None
    assert [(p.downstream, p.upstream) for p in tree.pulls] == [], "its pull went"
    assert tree.secondary_origins == (), "its secondary-origin term ran out"
    again = await registry.claim_secondary_origin(S1, US, D, lease_s=60)
    assert again.won and again.holder.epoch == claim.holder.epoch + 1
    s2 = await registry.stream(S2)
    assert s2 is not None and s2.state == "orphaned", "its publisher died with it"
    tree2 = await registry.relay_tree(S2)
    assert tree2 is not None and [p.downstream for p in tree2.pulls] == [A], "others' pulls stay"


async def test_a_node_the_registry_forgot_keeps_its_work_when_it_registers_again(
    registry: Registry,
) -> None:
    await registry.register(node_info(A, "eu"))
    await registry.claim_stream(S1, APP, NodeId("eu-2"), EU, ("video/VP8",), lease_s=60)
    await registry.record_pull(S1, A, NodeId("eu-2"), players=3)

    await registry.register(node_info(A, "eu"), new_life=False)

    tree = await registry.relay_tree(S1)
    assert tree is not None and [p.players for p in tree.pulls] == [3]


async def test_an_orphan_is_live_again_when_its_own_origin_renews_it(registry: Registry) -> None:
    await registry.claim_stream(S1, APP, A, EU, ("video/VP8",), lease_s=60)
    assert await registry.orphan_stream(S1, A)

    assert await registry.renew_stream(S1, A, lease_s=60)

    stream = await registry.stream(S1)
    assert stream is not None and stream.state == "live"
    assert not await registry.renew_stream(S1, NodeId("eu-2"), lease_s=60)


async def test_ended_streams_are_pruned_after_the_retention(registry: Registry) -> None:
    for stream_id in (S1, S2):
        await registry.claim_stream(stream_id, APP, A, EU, ("video/VP8",), lease_s=60)
    await registry.end_stream(S1, A)
    await registry.claim_stream(StreamId("s3"), APP, A, EU, ("video/VP8",), lease_s=60)
    await registry.orphan_stream(StreamId("s3"), A)
    await registry.record_pull(StreamId("s3"), C, A)

    assert await registry.prune_ended_streams(older_than_s=3600) == 0
    await asyncio.sleep(0.05)
    assert await registry.prune_ended_streams(older_than_s=0.01) == 2

    assert await registry.stream(S1) is None
    assert await registry.stream(StreamId("s3")) is None
    assert await registry.relay_tree(StreamId("s3")) is None
    live = await registry.stream(S2)
    assert live is not None and live.state == "live", "a live stream is never pruned"


async def test_nodes_silent_too_long_are_forgotten_with_their_pulls(registry: Registry) -> None:
    for node_id, group in ((A, "eu"), (C, "us"), (D, "us")):
        await registry.register(node_info(node_id, group))
    await registry.claim_stream(S1, APP, A, EU, ("video/VP8",), lease_s=60)
    await registry.record_pull(S1, C, A, players=2)
    await registry.record_pull(S1, D, C, players=1)
    assert await registry.reserve(D, lease_s=60)
    await asyncio.sleep(0.5)
    for alive in (A, C):
        assert await registry.heartbeat(alive, EU if alive == A else US, NodeLoad())

    assert await registry.forget_dead_nodes(dead_for_s=0.3) == [D]

    assert await registry.node(D) is None
    tree = await registry.relay_tree(S1)
    assert tree is not None and [(p.downstream, p.upstream) for p in tree.pulls] == [(C, A)]
    assert await registry.forget_dead_nodes(dead_for_s=0.3) == [], "nothing left to forget"
    assert not await registry.heartbeat(D, US, NodeLoad()), "a forgotten node is told so"
