"""The split-brain checker fails on histories with two holders at once, passes on sound ones.

Fabricated histories, so that every rule is seen to fail; the registry's own histories
pass in ``tests/registry/test_secondary_origin_history.py`` and after every fault here.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from cluster.types import NodeGroup, NodeId, SecondaryOriginChange, StreamId, TermChange
from tests.support.factories import EPOCH
from tests.support.split_brain import split_brains

C, D = NodeId("us-1"), NodeId("us-2")


def change(
    node: NodeId,
    epoch: int,
    how: TermChange,
    at_s: float,
    lease_s: float = 3.0,
    previous_s: float | None = None,
    group: str = "us",
) -> SecondaryOriginChange:
    """A history row ``at_s`` seconds into the test, its lease ``lease_s`` after that."""
    at = EPOCH + timedelta(seconds=at_s)
    ended = how not in ("claimed", "taken_over")
    return SecondaryOriginChange(
        stream_id=StreamId("s1"),
        node_group=NodeGroup(group),
        node_id=node,
        epoch=epoch,
        change=how,
        at=at,
        lease_expires_at=at if ended else at + timedelta(seconds=lease_s),
        previous_lease_expires_at=None
        if previous_s is None
        else EPOCH + timedelta(seconds=previous_s),
    )


SOUND = {
    "a lapsed lease claimed by another node": [
        change(C, 1, "claimed", 0),
        change(D, 2, "claimed", 5, previous_s=4),
    ],
    "a term taken over while its lease ran": [
        change(C, 1, "claimed", 0),
        change(D, 2, "taken_over", 1, previous_s=3),
    ],
    "a released term claimed at once": [
        change(C, 1, "claimed", 0),
        change(C, 1, "released", 1),
        change(D, 2, "claimed", 1, previous_s=1),
    ],
    "the holder renewing by claim, then a restart clearing it": [
        change(C, 1, "claimed", 0),
        change(C, 1, "claimed", 1, previous_s=3),
        change(C, 1, "cleared", 2),
        change(D, 2, "claimed", 2.5, previous_s=2),
    ],
    "a stream that ended and was published again starts at epoch 1": [
        change(C, 1, "claimed", 0),
        change(D, 2, "claimed", 5, previous_s=3),
        change(D, 2, "ended", 6),
        change(C, 1, "claimed", 7),
    ],
    "one node per region in two regions": [
        change(C, 1, "claimed", 0),
        change(D, 1, "claimed", 0, group="ap"),
    ],
}

BROKEN = {
    "another node claimed while the lease ran": (
        [change(C, 1, "claimed", 0), change(D, 2, "claimed", 1, previous_s=3)],
        "us-2 claimed epoch 2 at 00:00:01.000000 while us-1's lease of epoch 1 ran until",
    ),
    "two nodes under one epoch": (
        [change(C, 1, "claimed", 0), change(D, 1, "claimed", 4, previous_s=3)],
        "epoch 1 held by us-1 and by us-2",
    ),
    "the epoch went back": (
        [change(C, 2, "claimed", 0), change(D, 1, "claimed", 4, previous_s=3)],
        "us-2 began epoch 1 after epoch 2 of us-1",
    ),
    "a node released a term it did not hold": (
        [change(C, 1, "claimed", 0), change(D, 1, "released", 1)],
        "us-2 released epoch 1 while us-1 (epoch 1) held the role",
    ),
}


@pytest.mark.parametrize("history", SOUND.values(), ids=SOUND.keys())
def test_a_sound_history_passes(history: list[SecondaryOriginChange]) -> None:
    assert split_brains(history) == []


@pytest.mark.parametrize(("history", "named"), BROKEN.values(), ids=BROKEN.keys())
def test_a_split_brain_is_found_and_named(history: list[SecondaryOriginChange], named: str) -> None:
    found = split_brains(history)

    assert len(found) >= 1
    assert any(named in line for line in found), found
