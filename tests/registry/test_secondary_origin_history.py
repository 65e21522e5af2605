"""The history of secondary-origin terms: one row per change, written with the change.

Both back-ends. What the split-brain checker (``tests.support.split_brain``) replays.
"""

from __future__ import annotations

import asyncio

from cluster.registry import Registry
from cluster.types import AppName, NodeGroup, NodeId, SecondaryOriginChange, StreamId
from tests.support.factories import node_info
from tests.support.split_brain import assert_no_split_brain

S1, S2 = StreamId("s1"), StreamId("s2")
EU, US, AP = NodeGroup("eu"), NodeGroup("us"), NodeGroup("ap")
A, C, D = NodeId("eu-1"), NodeId("us-1"), NodeId("us-2")
APP = AppName("LiveApp")


def _terms(history: list[SecondaryOriginChange]) -> list[tuple[str, str, int, str]]:
    return [(row.node_group, row.node_id, row.epoch, row.change) for row in history]


async def test_every_change_of_a_term_is_recorded_in_order_and_renewals_are_not(
    registry: Registry,
) -> None:
    await registry.register(node_info(C, "us"))
    await registry.claim_stream(S1, APP, A, EU, ("video/VP8",), lease_s=60)
    first = await registry.claim_secondary_origin(S1, US, C, lease_s=0.3)
    assert await registry.renew_secondary_origin(S1, US, C, 1, lease_s=0.3)
    await asyncio.sleep(0.5)
    lapsed = await registry.claim_secondary_origin(S1, US, D, lease_s=60)
    taken = await registry.claim_secondary_origin(S1, US, C, lease_s=60, take_over=lapsed.holder)
    await registry.release_secondary_origin(S1, US, C, taken.holder.epoch)
    await registry.claim_secondary_origin(S1, US, D, lease_s=60)
    await registry.claim_secondary_origin(S1, US, D, lease_s=60)  # the holder again: a renewal
    await registry.claim_secondary_origin(S1, AP, C, lease_s=60)
    await registry.register(node_info(C, "us"))  # us-1 restarted: its ap term is void
    await registry.end_stream(S1, A)

    history = await registry.secondary_origin_history(S1)

    assert _terms(history) == [
        ("us", C, 1, "claimed"),
        ("us", D, 2, "claimed"),
        ("us", C, 3, "taken_over"),
        ("us", C, 3, "released"),
        ("us", D, 4, "claimed"),
        ("us", D, 4, "claimed"),
        ("ap", C, 1, "claimed"),
        ("ap", C, 1, "cleared"),
        ("us", D, 4, "ended"),
        ("ap", C, 1, "ended"),
    ]
    claimed, after_lapse, take_over, released = history[:4]
    assert claimed.previous_lease_expires_at is None, "nobody held the slot before"
    assert claimed.lease_expires_at == first.holder.lease_expires_at
    assert after_lapse.previous_lease_expires_at is not None
    assert after_lapse.previous_lease_expires_at <= after_lapse.at, "the renewed lease had run out"
    assert after_lapse.previous_lease_expires_at > claimed.lease_expires_at, "renewal counted"
    assert take_over.previous_lease_expires_at == lapsed.holder.lease_expires_at
    assert take_over.previous_lease_expires_at > take_over.at, "it fenced a running lease"
    assert released.lease_expires_at == released.at
    assert [row.at for row in history] == sorted(row.at for row in history)
    assert await assert_no_split_brain(registry) == len(history)


async def test_a_lost_claim_and_a_fenced_renewal_leave_no_row(registry: Registry) -> None:
    await registry.claim_secondary_origin(S1, US, C, lease_s=60)

    assert not (await registry.claim_secondary_origin(S1, US, D, lease_s=60)).won
    assert not await registry.renew_secondary_origin(S1, US, D, 1, lease_s=60)
    await registry.release_secondary_origin(S1, US, D, 1)

    assert _terms(await registry.secondary_origin_history()) == [("us", C, 1, "claimed")]


async def test_the_history_is_pruned_with_its_ended_stream(registry: Registry) -> None:
    for stream_id in (S1, S2):
        await registry.claim_stream(stream_id, APP, A, EU, ("video/VP8",), lease_s=60)
        await registry.claim_secondary_origin(stream_id, US, C, lease_s=60)
    await registry.end_stream(S1, A)
    await asyncio.sleep(0.05)

    assert await registry.prune_ended_streams(older_than_s=0.01) == 1

    assert await registry.secondary_origin_history(S1) == []
    assert _terms(await registry.secondary_origin_history(S2)) == [("us", C, 1, "claimed")]
