"""Streams in the registry: the main-origin claim, its lease, its end, and the relay tree."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from cluster.errors import StreamBusy
from cluster.registry import Registry
from cluster.types import AppName, NodeGroup, NodeId, PullEdge, StreamId
from tests.support.factories import node_info

S1 = StreamId("s1")
LIVE = AppName("live")
A, B, C, D = NodeId("node-a"), NodeId("node-b"), NodeId("node-c"), NodeId("node-d")
EU, US = NodeGroup("eu"), NodeGroup("us")
CODECS = ("H264", "opus")


async def test_first_claim_makes_the_node_main_origin(registry: Registry) -> None:
    before = await registry.now()

    claimed = await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=10)

    assert (claimed.id, claimed.app, claimed.origin_node, claimed.origin_group) == (S1, LIVE, A, EU)
    assert claimed.state == "live"
    assert claimed.codecs == CODECS
    assert claimed.lease_expires_at - before >= timedelta(seconds=10)
    assert await registry.stream(S1) == claimed


async def test_claim_of_a_stream_live_elsewhere_is_busy_naming_the_holder(
    registry: Registry,
) -> None:
    held = await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=10)

    with pytest.raises(StreamBusy, match="node-a") as busy:
        await registry.claim_stream(S1, LIVE, B, US, CODECS, lease_s=10)

    assert busy.value.status == 409
    assert await registry.stream(S1) == held


async def test_holder_claiming_again_renews_its_lease(registry: Registry) -> None:
    first = await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=1)

    again = await registry.claim_stream(S1, LIVE, A, EU, ("VP8",), lease_s=10)

    assert again.origin_node == A
    assert again.codecs == ("VP8",)
    assert again.lease_expires_at > first.lease_expires_at


async def test_ended_stream_can_be_claimed_by_another_node(registry: Registry) -> None:
    await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=10)
    await registry.end_stream(S1, A)
    ended = await registry.stream(S1)
    assert ended is not None
    assert ended.state == "ended"

    claimed = await registry.claim_stream(S1, LIVE, B, US, CODECS, lease_s=10)

    assert (claimed.origin_node, claimed.origin_group, claimed.state) == (B, US, "live")


async def test_expired_lease_lets_another_node_claim_and_fences_the_old_holder(
    registry: Registry,
) -> None:
    await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=0.3)
    await asyncio.sleep(0.5)

    claimed = await registry.claim_stream(S1, LIVE, B, US, CODECS, lease_s=10)

    assert claimed.origin_node == B
    assert await registry.renew_stream(S1, A, lease_s=10) is False
    with pytest.raises(StreamBusy, match="node-b"):
        await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=10)


async def test_only_the_holder_renews_a_live_stream(registry: Registry) -> None:
    first = await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=1)

    assert await registry.renew_stream(S1, A, lease_s=10) is True
    assert await registry.renew_stream(S1, B, lease_s=10) is False
    renewed = await registry.stream(S1)
    assert renewed is not None
    assert renewed.lease_expires_at > first.lease_expires_at

    await registry.end_stream(S1, A)
    assert await registry.renew_stream(S1, A, lease_s=10) is False
    assert await registry.renew_stream(StreamId("unknown"), A, lease_s=10) is False


async def test_end_by_another_node_changes_nothing(registry: Registry) -> None:
    held = await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=10)
    await registry.record_pull(S1, B, A)

    await registry.end_stream(S1, B)

    tree = await registry.relay_tree(S1)
    assert tree is not None
    assert tree.stream == held
    assert [(p.downstream, p.upstream) for p in tree.pulls] == [(B, A)]


async def test_end_removes_the_relay_tree(registry: Registry) -> None:
    await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=10)
    await registry.claim_secondary_origin(S1, US, C, lease_s=10)
    await registry.record_pull(S1, C, A)
    await registry.record_pull(S1, D, C)

    await registry.end_stream(S1, A)

    tree = await registry.relay_tree(S1)
    assert tree is not None
    assert tree.stream.state == "ended"
    assert (tree.secondary_origins, tree.pulls) == ((), ())
    assert await registry.secondary_origin(S1, US) is None


async def test_relay_tree_holds_every_pull_and_running_secondary_origin(
    registry: Registry,
) -> None:
    await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=10)
    secondary = await registry.claim_secondary_origin(S1, US, C, lease_s=10)
    await registry.record_pull(S1, B, A)
    await registry.record_pull(S1, C, A)
    await registry.record_pull(S1, D, C)

    tree = await registry.relay_tree(S1)

    assert tree is not None
    assert tree.stream.origin_node == A
    assert tree.secondary_origins == (secondary.holder,)
    assert [(p.upstream, p.downstream) for p in tree.pulls] == [(A, B), (A, C), (C, D)]
    assert {p.stream_id for p in tree.pulls} == {S1}


async def test_recording_a_pull_again_keeps_since_and_a_new_upstream_restarts_it(
    registry: Registry,
) -> None:
    await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=10)
    await registry.record_pull(S1, D, B)
    [first] = await _pulls(registry)
    await asyncio.sleep(0.01)

    await registry.record_pull(S1, D, B)
    [same] = await _pulls(registry)
    await registry.record_pull(S1, D, C)
    [moved] = await _pulls(registry)

    assert same == first
    assert moved.upstream == C
    assert moved.since > first.since


async def test_removed_pull_leaves_the_tree(registry: Registry) -> None:
    await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=10)
    await registry.record_pull(S1, B, A)
    await registry.record_pull(S1, C, A)

    await registry.remove_pull(S1, B)
    await registry.remove_pull(S1, B)

    assert [p.downstream for p in await _pulls(registry)] == [C]


async def test_relay_tree_of_an_unknown_stream_is_none(registry: Registry) -> None:
    assert await registry.relay_tree(StreamId("unknown")) is None
    assert await registry.stream(StreamId("unknown")) is None


async def test_codec_names_with_commas_are_refused(registry: Registry) -> None:
    with pytest.raises(ValueError, match="codec"):
        await registry.claim_stream(S1, LIVE, A, EU, ("H264,VP8",), lease_s=10)


async def _pulls(registry: Registry) -> list[PullEdge]:
    tree = await registry.relay_tree(S1)
    assert tree is not None
    return list(tree.pulls)


async def test_a_stream_whose_origin_is_gone_is_orphaned_then_claimable(
    registry: Registry,
) -> None:
    await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=10)

    assert await registry.orphan_stream(S1, B) is False, "only the holder's loss orphans it"
    assert await registry.orphan_stream(S1, A) is True
    assert await registry.orphan_stream(S1, A) is False, "already orphaned"
    orphaned = await registry.stream(S1)
    assert orphaned is not None and orphaned.state == "orphaned"

    republished = await registry.claim_stream(S1, LIVE, C, US, CODECS, lease_s=10)
    assert (republished.state, republished.origin_node) == ("live", C)
    assert await registry.orphan_stream(S1, A) is False, "the new origin keeps it live"


async def test_players_per_node_are_reported_with_the_lease_and_the_pull(
    registry: Registry,
) -> None:
    await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=10)
    assert await registry.renew_stream(S1, A, lease_s=10, players=7)
    await registry.record_pull(S1, B, A, players=3)
    await registry.record_pull(S1, B, A, players=5)

    tree = await registry.relay_tree(S1)

    assert tree is not None
    assert tree.stream.origin_players == 7
    assert [(e.downstream, e.players) for e in tree.pulls] == [(B, 5)]


async def test_a_snapshot_reads_the_whole_cluster_or_one_stream_in_one_go(
    registry: Registry,
) -> None:
    for name, group in ((A, "eu"), (B, "us"), (C, "us")):
        await registry.register(node_info(name, group))
    s2 = StreamId("s2")
    await registry.claim_stream(S1, LIVE, A, EU, CODECS, lease_s=10)
    await registry.claim_stream(s2, LIVE, A, EU, CODECS, lease_s=10)
    await registry.claim_secondary_origin(S1, US, B, lease_s=10)
    await registry.record_pull(S1, B, A, players=2)
    await registry.record_pull(S1, C, B, players=1)
    await registry.record_pull(s2, B, A)
    await registry.claim_stream(StreamId("gone"), LIVE, A, EU, CODECS, lease_s=10)
    await registry.end_stream(StreamId("gone"), A)

    whole = await registry.snapshot()
    assert set(whole.alive) == {A, B, C}
    assert [s.id for s in whole.streams] == [S1, s2], "ended streams are left out"
    assert [(o.stream_id, o.node_group, o.node_id) for o in whole.secondary_origins] == [
        (S1, US, B)
    ]
    assert len(whole.pulls) == 3
    assert whole.read_at <= await registry.now()

    one = await registry.snapshot(S1)
    assert set(one.alive) == {A, B, C}, "every live node, whatever the stream"
    assert [s.id for s in one.streams] == [S1]
    assert one.secondary_origin(S1, US) == whole.secondary_origin(S1, US)
    assert {(e.downstream, e.upstream, e.players) for e in one.pulls_of(S1)} == {
        (B, A, 2),
        (C, B, 1),
    }
    assert one.pulls == one.pulls_of(S1)
