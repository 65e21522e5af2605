"""Where a node pulls a stream from: pure decisions over one snapshot of the registry.

The rules (DESIGN §1, §5), in order:

1. The node is the stream's main origin: nothing to pull.
2. The main origin is in the node's region: pull from the main origin.
3. The region has a live secondary origin: pull from it. If that is this node,
   pull from the main origin as the region's secondary origin.
4. Otherwise: claim the region's secondary origin (the caller does, atomically)
   and plan again with the result (``plan_after_claim``) — the winner pulls from
   the main origin, a loser from the winner. A claim lost to a holder that is
   gone (its lease outlives its heartbeat for a moment) means: wait for the
   lease to run out.
5. A node already pulling keeps its upstream while it still works
   (``keeps_upstream``), rather than follow every change of the tree; and
   rather than claim a role its working upstream still serves (``holds_on``).

Whatever the root chosen by 2 or 3, a node that already serves
``max_downstreams`` pulling nodes is full: the pull goes to the shallowest node
of the region that already carries the stream and has room, so the relay tree
grows level by level instead of overloading one node. A stream never crosses
regions again below a live secondary origin.

No I/O here: the caller reads the registry, calls ``plan``, and acts.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, replace

from cluster.types import (
    ClusterSnapshot,
    NodeGroup,
    NodeId,
    NodeRecord,
    PullEdge,
    SecondaryOrigin,
    StreamRecord,
)


@dataclass(frozen=True, slots=True)
class Upstream:
    """Pull from ``node``; ``secondary_origin``: as this region's secondary origin."""

    node: NodeId
    secondary_origin: bool = False


@dataclass(frozen=True, slots=True)
class ClaimSecondary:
    """The region has no live secondary origin: claim it, then plan again."""


@dataclass(frozen=True, slots=True)
class IsOrigin:
    """This node is the stream's main origin: it serves from its publisher."""


@dataclass(frozen=True, slots=True)
class WaitForLease:
    """The region's secondary origin is leased to ``holder``, which is gone: wait it out."""

    holder: NodeId


Plan = Upstream | ClaimSecondary | IsOrigin


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What ``plan`` decides from: one read of the registry."""

    stream: StreamRecord
    secondary_origin: SecondaryOrigin | None
    pulls: tuple[PullEdge, ...]
    alive: Mapping[NodeId, NodeRecord]

    @classmethod
    def of(cls, cluster: ClusterSnapshot, stream: StreamRecord, group: NodeGroup) -> Snapshot:
        """The part of a registry snapshot that planning ``stream`` in ``group`` needs."""
        return cls(
            stream,
            cluster.secondary_origin(stream.id, group),
            cluster.pulls_of(stream.id),
            cluster.alive,
        )


def plan(me: NodeId, group: NodeGroup, snapshot: Snapshot, max_downstreams: int) -> Plan:
    stream = snapshot.stream
    if stream.origin_node == me:
        return IsOrigin()
    if stream.origin_group == group:
        return _with_room(stream.origin_node, me, group, snapshot, max_downstreams)
    holder = snapshot.secondary_origin
    if holder is not None and holder.node_id == me:  # alive to itself, whatever the registry says
        return Upstream(stream.origin_node, secondary_origin=True)
    if holder is None or holder.node_id not in snapshot.alive:
        return ClaimSecondary()
    return _with_room(holder.node_id, me, group, snapshot, max_downstreams)


def plan_after_claim(
    me: NodeId,
    group: NodeGroup,
    snapshot: Snapshot,
    holder: SecondaryOrigin,
    max_downstreams: int,
) -> Upstream | IsOrigin | WaitForLease:
    """Plan again once the claim answered who holds the region's secondary origin."""
    decision = plan(me, group, replace(snapshot, secondary_origin=holder), max_downstreams)
    if isinstance(decision, ClaimSecondary):
        return WaitForLease(holder.node_id)
    return decision


def replans_orphan(me: NodeId, snapshot: Snapshot) -> bool:
    """Whether a node whose pull of an orphaned stream was lost, and that receives
    nothing of it, plans again as usual instead of holding its players.

    Only below another live node that holds its region's secondary origin: that
    node may still receive from a main origin cut off from the registry alone.
    ``plan`` then claims nothing (the holder is alive) and names it or a tree
    parent; if it receives nothing either, the grace period runs out there too.
    """
    holder = snapshot.secondary_origin
    return holder is not None and holder.node_id != me and holder.node_id in snapshot.alive


def holds_on(current: NodeId | None, snapshot: Snapshot, group: NodeGroup) -> bool:
    """Whether a node that ``plan`` tells to claim keeps pulling from ``current`` instead.

    It does while it pulls from a node other than the main origin that has not
    been reported lost (the caller forgets ``current`` the moment its pull goes
    silent) and that the registry does not show moved or draining: the registry
    lost sight of that node (its heartbeat or its lease lapsed while it, or we,
    could not reach the registry), not of the stream. Claiming then takes the
    role from a node that still serves it, and every node of the region moves;
    left alone, the holder renews its term when it reaches the registry again.
    A node the registry shows alive in another region, or draining, has handed
    its role over: then claim.
    """
    if current is None or current == snapshot.stream.origin_node:
        return False
    record = snapshot.alive.get(current)
    return record is None or (record.node_group == group and record.state == "serving")


def keeps_upstream(
    current: NodeId, decision: Upstream, alive: Mapping[NodeId, NodeRecord], group: NodeGroup
) -> bool:
    """Whether a node pulling from ``current`` stays there although ``decision`` names another.

    A secondary origin must pull from the main origin; any other node may stay
    on a live, serving node of its own region.
    """
    record = alive.get(current)
    if record is None:
        return False
    if decision.secondary_origin:
        return current == decision.node
    return current == decision.node or (record.node_group == group and record.state == "serving")


def _with_room(
    root: NodeId, me: NodeId, group: NodeGroup, snapshot: Snapshot, max_downstreams: int
) -> Upstream:
    """``root``, or the shallowest carrier of the region below it that has room.

    Carriers are found breadth-first from ``root`` along the recorded pulls of
    live nodes (a dead node's pull edge neither fills its upstream nor carries);
    only live, serving (not draining) nodes of ``group`` other than ``me``, and
    not below ``me``, count.
    When every carrier is full, the root takes the pull anyway: a player is
    never refused for want of a tree slot.
    """
    edges = [e for e in snapshot.pulls if e.downstream != me and e.downstream in snapshot.alive]
    served = Counter(e.upstream for e in edges)
    children: dict[NodeId, list[NodeId]] = {}
    for edge in sorted(edges, key=lambda e: e.downstream):
        children.setdefault(edge.upstream, []).append(edge.downstream)
    queue = deque([root])
    seen = {root}
    while queue:
        node = queue.popleft()
        if served[node] < max_downstreams:
            return Upstream(node)
        for child in children.get(node, ()):
            record = snapshot.alive.get(child)
            if (
                child not in seen
                and record is not None
                and record.node_group == group
                and record.state == "serving"
            ):
                seen.add(child)
                queue.append(child)
    return Upstream(root)
