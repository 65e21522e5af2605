"""Placement: which upstream a node pulls a stream from, decided from one registry snapshot."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from cluster.routing.placement import (
    ClaimSecondary,
    IsOrigin,
    Snapshot,
    Upstream,
    WaitForLease,
    holds_on,
    keeps_upstream,
    plan,
    plan_after_claim,
    replans_orphan,
)
from cluster.types import (
    AppName,
    NodeGroup,
    NodeId,
    NodeRecord,
    PullEdge,
    SecondaryOrigin,
    StreamId,
    StreamRecord,
)
from tests.support.factories import node_record

NOW = datetime(2026, 11, 21, tzinfo=UTC)
S = StreamId("s1")


def node(name: str) -> NodeRecord:
    return node_record(name, seen=NOW)


def snapshot(
    alive: list[str],
    pulls: list[tuple[str, str]] = (),  # type: ignore[assignment]
    secondary: str | None = None,
    origin: str = "eu-1",
) -> Snapshot:
    stream = StreamRecord(
        id=S,
        app=AppName("LiveApp"),
        origin_node=NodeId(origin),
        origin_group=NodeGroup(origin.split("-")[0]),
        state="live",
        codecs=(),
        lease_expires_at=NOW,
    )
    holder = (
        SecondaryOrigin(S, NodeGroup(secondary.split("-")[0]), NodeId(secondary), 1, NOW)
        if secondary
        else None
    )
    edges = tuple(PullEdge(S, NodeId(down), NodeId(up), NOW) for down, up in pulls)
    return Snapshot(stream, holder, edges, {NodeId(n): node(n) for n in alive})


def decide(me: str, snap: Snapshot, max_downstreams: int = 8) -> object:
    return plan(NodeId(me), NodeGroup(me.split("-")[0]), snap, max_downstreams)


ALL = ["eu-1", "eu-2", "eu-3", "us-1", "us-2", "us-3", "ap-1"]


@pytest.mark.parametrize(
    ("me", "snap", "expected"),
    [
        pytest.param("eu-1", snapshot(ALL), IsOrigin(), id="the main origin serves its publisher"),
        pytest.param(
            "eu-2",
            snapshot(ALL),
            Upstream(NodeId("eu-1")),
            id="an edge in the origin's region pulls from the origin",
        ),
        pytest.param(
            "us-1",
            snapshot(ALL),
            ClaimSecondary(),
            id="first node of another region claims the secondary origin",
        ),
        pytest.param(
            "us-1",
            snapshot(ALL, secondary="us-1"),
            Upstream(NodeId("eu-1"), True),
            id="the secondary origin pulls from the main origin",
        ),
        pytest.param(
            "us-2",
            snapshot(ALL, [("us-1", "eu-1")], secondary="us-1"),
            Upstream(NodeId("us-1")),
            id="second edge in region pulls from secondary",
        ),
        pytest.param(
            "us-2",
            snapshot([n for n in ALL if n != "us-1"], [("us-1", "eu-1")], secondary="us-1"),
            ClaimSecondary(),
            id="a dead secondary origin is claimed again",
        ),
        pytest.param(
            "us-1",
            snapshot([n for n in ALL if n != "us-1"], secondary="us-1"),
            Upstream(NodeId("eu-1"), True),
            id="a secondary origin the registry lost sight of is alive to itself",
        ),
    ],
)
def test_plan(me: str, snap: Snapshot, expected: object) -> None:
    assert decide(me, snap) == expected


def test_full_upstream_sends_the_pull_to_the_shallowest_carrier_with_room() -> None:
    pulls = [("eu-2", "eu-1")]
    assert decide("eu-3", snapshot(ALL, pulls), max_downstreams=1) == Upstream(NodeId("eu-2"))
    deeper = [("eu-2", "eu-1"), ("eu-3", "eu-2")]
    assert decide("eu-4", snapshot([*ALL, "eu-4"], deeper), max_downstreams=1) == Upstream(
        NodeId("eu-3")
    )


def test_tree_below_a_secondary_origin_stays_in_its_region() -> None:
    pulls = [("us-1", "eu-1"), ("eu-2", "eu-1"), ("us-2", "us-1")]
    snap = snapshot(ALL, pulls, secondary="us-1")
    assert decide("us-3", snap, max_downstreams=1) == Upstream(NodeId("us-2"))


def test_when_no_carrier_has_room_the_root_takes_the_pull() -> None:
    snap = snapshot(["eu-1", "eu-2", "eu-4"], [("eu-2", "eu-1")])
    draining = replace(snap.alive[NodeId("eu-2")], state="draining")  # leaving: takes no pulls
    snap = replace(snap, alive={**snap.alive, NodeId("eu-2"): draining})
    assert decide("eu-4", snap, max_downstreams=1) == Upstream(NodeId("eu-1"))


def test_a_node_never_plans_below_itself() -> None:
    pulls = [("eu-2", "eu-1"), ("eu-3", "eu-2")]
    assert decide("eu-2", snapshot(ALL, pulls), max_downstreams=1) == Upstream(NodeId("eu-1"))


def test_pulls_of_dead_nodes_do_not_fill_their_upstream() -> None:
    pulls = [("eu-2", "eu-1")]
    snap = snapshot(["eu-1", "eu-3"], pulls)  # eu-2 died without removing its pull
    assert decide("eu-3", snap, max_downstreams=1) == Upstream(NodeId("eu-1"))


@pytest.mark.parametrize(
    ("current", "decided", "secondary", "keeps"),
    [
        pytest.param("us-2", "us-1", False, True, id="an edge stays on a live node of its region"),
        pytest.param("eu-2", "us-1", False, False, id="an edge leaves a node of another region"),
        pytest.param("us-9", "us-1", False, False, id="an edge leaves a dead upstream"),
        pytest.param("us-2", "eu-1", True, False, id="a secondary origin goes to the main origin"),
        pytest.param("eu-1", "eu-1", True, True, id="a secondary origin stays on the main origin"),
    ],
)
def test_a_working_upstream_is_kept_unless_the_role_demands_another(
    current: str, decided: str, secondary: bool, keeps: bool
) -> None:
    alive = snapshot(ALL).alive
    decision = Upstream(NodeId(decided), secondary_origin=secondary)
    assert keeps_upstream(NodeId(current), decision, alive, NodeGroup("us")) is keeps


def test_after_a_won_claim_the_winner_pulls_from_the_main_origin() -> None:
    snap = snapshot(ALL)
    holder = SecondaryOrigin(S, NodeGroup("us"), NodeId("us-1"), 1, NOW)
    after = plan_after_claim(NodeId("us-1"), NodeGroup("us"), snap, holder, 8)
    assert after == Upstream(NodeId("eu-1"), secondary_origin=True)


def test_after_a_lost_claim_the_loser_pulls_from_the_winner() -> None:
    snap = snapshot(ALL)
    holder = SecondaryOrigin(S, NodeGroup("us"), NodeId("us-1"), 1, NOW)
    assert plan_after_claim(NodeId("us-2"), NodeGroup("us"), snap, holder, 8) == Upstream(
        NodeId("us-1")
    )


def test_a_claim_lost_to_a_holder_that_is_gone_waits_for_its_lease() -> None:
    snap = snapshot([n for n in ALL if n != "us-1"])
    holder = SecondaryOrigin(S, NodeGroup("us"), NodeId("us-1"), 1, NOW)
    after = plan_after_claim(NodeId("us-2"), NodeGroup("us"), snap, holder, 8)
    assert after == WaitForLease(NodeId("us-1"))


@pytest.mark.parametrize(
    ("current", "alive", "holds"),
    [
        pytest.param("us-1", [n for n in ALL if n != "us-1"], True,
                     id="an upstream the registry lost sight of is kept"),
        pytest.param("us-1", ALL, True, id="an upstream whose lease lapsed is kept"),
        pytest.param(None, ALL, False, id="a node with no upstream claims"),
        pytest.param("eu-1", ALL, False, id="a lapsed secondary origin claims again"),
    ],
)  # fmt: skip
def test_a_working_upstream_is_not_claimed_from(
    current: str | None, alive: list[str], holds: bool
) -> None:
    snap = snapshot(alive)
    assert holds_on(NodeId(current) if current else None, snap, NodeGroup("us")) is holds


def test_an_upstream_that_moved_region_or_drains_is_claimed_from() -> None:
    moved = snapshot(ALL)
    moved = replace(moved, alive={**moved.alive, NodeId("us-1"): node_record("us-1", "ap")})
    assert not holds_on(NodeId("us-1"), moved, NodeGroup("us"))
    draining = snapshot(ALL)
    record = node_record("us-1", state="draining")
    draining = replace(draining, alive={**draining.alive, NodeId("us-1"): record})
    assert not holds_on(NodeId("us-1"), draining, NodeGroup("us"))


@pytest.mark.parametrize(
    ("me", "alive", "secondary", "replans"),
    [
        pytest.param("us-2", ALL, "us-1", True, id="below a live holder of its region"),
        pytest.param("us-2", [n for n in ALL if n != "us-1"], "us-1", False,
                     id="not below a holder that is gone"),
        pytest.param("us-1", ALL, "us-1", False, id="not the holder itself"),
        pytest.param("us-2", ALL, None, False, id="not without a holder"),
    ],
)  # fmt: skip
def test_an_orphaned_stream_is_planned_again_only_below_a_live_holder(
    me: str, alive: list[str], secondary: str | None, replans: bool
) -> None:
    snap = snapshot(alive, secondary=secondary)
    assert replans_orphan(NodeId(me), snap) is replans
