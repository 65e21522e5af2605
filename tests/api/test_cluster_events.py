"""The dashboard's event log: each change between two snapshots, in the words an operator reads."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cluster.api.cluster_events import diff
from cluster.types import (
    AppName,
    ClusterSnapshot,
    NodeGroup,
    NodeId,
    NodeRecord,
    NodeState,
    PullEdge,
    SecondaryOrigin,
    StreamId,
    StreamRecord,
    StreamState,
)
from tests.support.factories import node_record

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = StreamId("s1")


def node(name: str, group: str = "eu", state: NodeState = "serving") -> NodeRecord:
    return node_record(name, group, state, T0)


def stream(origin: str = "eu-1", state: StreamState = "live") -> StreamRecord:
    return StreamRecord(S, AppName("LiveApp"), NodeId(origin), NodeGroup("eu"), state, ("VP8",), T0)


def origin(holder: str, epoch: int, group: str = "us") -> SecondaryOrigin:
    return SecondaryOrigin(S, NodeGroup(group), NodeId(holder), epoch, T0)


def pull(downstream: str, upstream: str) -> PullEdge:
    return PullEdge(S, NodeId(downstream), NodeId(upstream), T0)


def snapshot(*parts: object, at: int = 0) -> ClusterSnapshot:
    return ClusterSnapshot(
        read_at=T0 + timedelta(seconds=at),
        nodes=tuple(p for p in parts if isinstance(p, NodeRecord)),
        streams=tuple(p for p in parts if isinstance(p, StreamRecord)),
        secondary_origins=tuple(p for p in parts if isinstance(p, SecondaryOrigin)),
        pulls=tuple(p for p in parts if isinstance(p, PullEdge)),
    )


EU1, EU2, US1, US2 = node("eu-1"), node("eu-2"), node("us-1", "us"), node("us-2", "us")
TREE = (EU1, EU2, US1, US2, stream(), origin("us-1", 1), pull("us-1", "eu-1"), pull("us-2", "us-1"))


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ((EU1,), (EU1, EU2), [("node-joined", "eu-2 joined region eu")]),
        ((EU1, EU2), (EU1,), [("node-died", "eu-2 died (no heartbeat in region eu)")]),
        ((EU1, node("eu-2", state="draining")), (EU1,), [("node-left", "eu-2 left")]),
        ((EU1, EU2), (EU1, replace(EU2, state="draining")),
         [("node-draining", "eu-2 is draining")]),
        ((EU1, EU2), (EU1, replace(EU2, node_group=NodeGroup("ap"))),
         [("node-moved", "eu-2 moved from region eu to ap")]),
        ((EU1,), (EU1, stream()),
         [("stream-published", "s1 published on eu-1 (main origin, region eu)")]),
        ((EU1, stream()), (EU1, stream(state="orphaned")),
         [("stream-orphaned", "s1 lost its main origin eu-1; players held for a while")]),
        ((EU1, EU2, stream(state="orphaned")), (EU1, EU2, stream("eu-2")),
         [("stream-published", "s1 published on eu-2 (main origin, region eu)")]),
        ((EU1, stream()), (EU1,), [("stream-ended", "s1 ended")]),
        ((US1,), (US1, origin("us-1", 1)),
         [("secondary-origin-claimed",
           "us-1 claimed the secondary origin of s1 in region us (epoch 1)")]),
        ((US1, US2, origin("us-1", 1)), (US1, US2, origin("us-2", 2)),
         [("secondary-origin-reclaimed",
           "us-2 re-claimed the secondary origin of s1 in region us (epoch 2)")]),
        ((US1, US2), (US1, US2, origin("us-2", 3)),
         [("secondary-origin-reclaimed",
           "us-2 re-claimed the secondary origin of s1 in region us (epoch 3)")]),
        ((US1, origin("us-1", 1)), (US1,),
         [("secondary-origin-released",
           "us-1 is no longer the secondary origin of s1 in region us")]),
        ((US1,), (US1, pull("us-1", "eu-1")),
         [("pull-started", "us-1 started pulling s1 from eu-1")]),
        ((US2, pull("us-2", "us-1")), (US2, pull("us-2", "eu-1")),
         [("pull-moved", "us-2 now pulls s1 from eu-1 (was us-1)")]),
        ((US1, pull("us-1", "eu-1")), (US1,),
         [("pull-stopped", "us-1 stopped pulling s1 from eu-1")]),
        (TREE, TREE, []),
    ],
    ids=["node joined", "node died", "drained node left", "node draining", "node changed region",
         "stream published", "main origin lost", "published again elsewhere", "stream ended",
         "secondary origin claimed", "secondary origin re-claimed with its epoch",
         "re-claimed after its lease lapsed",
         "secondary origin given up", "pull started", "pull moved upstream", "pull stopped",
         "nothing changed"],
)  # fmt: skip
def test_each_change_is_one_event(
    before: tuple[object, ...], after: tuple[object, ...], expected: list[tuple[str, str]]
) -> None:
    events = diff(snapshot(*before), snapshot(*after, at=1))
    assert [(e.kind, e.text) for e in events] == expected
    assert all(e.at == T0 + timedelta(seconds=1) for e in events)


def test_a_dead_node_takes_its_role_and_pull_with_it() -> None:
    """Its pull row stays in the registry until cleared, but it is shown as stopped at once."""
    after = snapshot(EU1, US2, stream(), origin("us-2", 2), pull("us-1", "eu-1"),
                     pull("us-2", "eu-1"), at=1)  # fmt: skip
    events = diff(snapshot(*TREE), after)
    assert [(e.kind, e.node) for e in events] == [
        ("node-died", "eu-2"),
        ("node-died", "us-1"),
        ("secondary-origin-reclaimed", "us-2"),
        ("pull-moved", "us-2"),
        ("pull-stopped", "us-1"),
    ]


def test_an_empty_cluster_before_tells_the_whole_story() -> None:
    """How a dashboard's log begins: the cluster as it stands, as if it had just formed."""
    events = diff(ClusterSnapshot(read_at=T0, nodes=()), snapshot(*TREE, at=1))
    assert [e.kind for e in events] == [
        "node-joined", "node-joined", "node-joined", "node-joined", "stream-published",
        "secondary-origin-claimed", "pull-started", "pull-started",
    ]  # fmt: skip
    assert events[4].json() == {
        "at": "2026-01-01T00:00:01+00:00",
        "kind": "stream-published",
        "text": "s1 published on eu-1 (main origin, region eu)",
        "stream": "s1",
        "node": "eu-1",
    }
