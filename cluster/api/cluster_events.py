"""What happened in the cluster between two snapshots, in the words an operator reads.

The registry keeps state, not history, so the dashboard's event log is the
difference between successive ``ClusterSnapshot``s: a node appearing or
disappearing (died while serving, left after draining), changing region or
starting to drain; a stream published, orphaned or ended; a secondary origin
claimed, re-claimed (any epoch past the first: the role changed hands, even
if its lease lapsed between two snapshots) or given up; a pull started, moved
to another upstream or stopped. Pure functions, so each case is a unit test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cluster.types import ClusterSnapshot, NodeGroup, NodeId, StreamId


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """One change, stamped with the registry time of the snapshot that showed it."""

    at: datetime
    kind: str
    text: str
    stream: StreamId | None = None
    node: NodeId | None = None

    def json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "text": self.text,
            "stream": self.stream,
            "node": self.node,
        }


def diff(before: ClusterSnapshot, after: ClusterSnapshot) -> list[ClusterEvent]:
    """Every change from ``before`` to ``after``: nodes, then streams, origins and pulls."""
    at = after.read_at
    return [
        *_nodes(before, after, at),
        *_streams(before, after, at),
        *_secondary_origins(before, after, at),
        *_pulls(before, after, at),
    ]


def _nodes(before: ClusterSnapshot, after: ClusterSnapshot, at: datetime) -> list[ClusterEvent]:
    events: list[ClusterEvent] = []
    old, new = before.alive, after.alive
    for node_id, record in new.items():
        was = old.get(node_id)
        if was is None:
            events.append(
                ClusterEvent(at, "node-joined", f"{node_id} joined region {record.node_group}",
                             node=node_id)
            )  # fmt: skip
            continue
        if was.node_group != record.node_group:
            events.append(
                ClusterEvent(at, "node-moved",
                             f"{node_id} moved from region {was.node_group} to {record.node_group}",
                             node=node_id)
            )  # fmt: skip
        if was.state != record.state:
            events.append(
                ClusterEvent(at, f"node-{record.state}", f"{node_id} is {record.state}",
                             node=node_id)
            )  # fmt: skip
    for node_id, was in old.items():
        if node_id not in new:
            if was.state == "draining":
                events.append(ClusterEvent(at, "node-left", f"{node_id} left", node=node_id))
            else:
                events.append(
                    ClusterEvent(at, "node-died",
                                 f"{node_id} died (no heartbeat in region {was.node_group})",
                                 node=node_id)
                )  # fmt: skip
    return events


def _streams(before: ClusterSnapshot, after: ClusterSnapshot, at: datetime) -> list[ClusterEvent]:
    events: list[ClusterEvent] = []
    old = {s.id: s for s in before.streams}
    new = {s.id: s for s in after.streams}
    for stream_id, stream in new.items():
        was = old.get(stream_id)
        if stream.state == "live" and (was is None or was.origin_node != stream.origin_node
                                       or was.state != "live"):  # fmt: skip
            events.append(
                ClusterEvent(at, "stream-published",
                             f"{stream_id} published on {stream.origin_node} "
                             f"(main origin, region {stream.origin_group})",
                             stream=stream_id, node=stream.origin_node)
            )  # fmt: skip
        elif stream.state == "orphaned" and (was is None or was.state != "orphaned"):
            events.append(
                ClusterEvent(at, "stream-orphaned",
                             f"{stream_id} lost its main origin {stream.origin_node}; "
                             "players held for a while",
                             stream=stream_id, node=stream.origin_node)
            )  # fmt: skip
    for stream_id, was in old.items():
        if stream_id not in new:
            events.append(
                ClusterEvent(at, "stream-ended", f"{stream_id} ended", stream=stream_id,
                             node=was.origin_node)
            )  # fmt: skip
    return events


def _secondary_origins(
    before: ClusterSnapshot, after: ClusterSnapshot, at: datetime
) -> list[ClusterEvent]:
    events: list[ClusterEvent] = []
    Key = tuple[StreamId, NodeGroup]
    old: dict[Key, Any] = {(o.stream_id, o.node_group): o for o in before.secondary_origins}
    new: dict[Key, Any] = {(o.stream_id, o.node_group): o for o in after.secondary_origins}
    for (stream_id, group), holder in new.items():
        was = old.get((stream_id, group))
        if was is not None and was.epoch == holder.epoch:
            continue
        if holder.epoch > 1:  # the role changed hands, whether or not a lapse was seen between
            kind, verb = "secondary-origin-reclaimed", "re-claimed"
        else:
            kind, verb = "secondary-origin-claimed", "claimed"
        events.append(
            ClusterEvent(at, kind,
                         f"{holder.node_id} {verb} the secondary origin of {stream_id} in region "
                         f"{group} (epoch {holder.epoch})",
                         stream=stream_id, node=holder.node_id)
        )  # fmt: skip
    for (stream_id, group), was in old.items():
        if (stream_id, group) not in new:
            events.append(
                ClusterEvent(at, "secondary-origin-released",
                             f"{was.node_id} is no longer the secondary origin of {stream_id} "
                             f"in region {group}",
                             stream=stream_id, node=was.node_id)
            )  # fmt: skip
    return events


def _pulls(before: ClusterSnapshot, after: ClusterSnapshot, at: datetime) -> list[ClusterEvent]:
    events: list[ClusterEvent] = []
    # A dead node's edges stay recorded until someone clears them: they count as stopped.
    was_alive, alive = before.alive, after.alive
    old = {(e.stream_id, e.downstream): e for e in before.pulls if e.downstream in was_alive}
    new = {(e.stream_id, e.downstream): e for e in after.pulls if e.downstream in alive}
    for (stream_id, downstream), edge in new.items():
        was = old.get((stream_id, downstream))
        if was is None:
            text = f"{downstream} started pulling {stream_id} from {edge.upstream}"
            kind = "pull-started"
        elif was.upstream != edge.upstream:
            text = f"{downstream} now pulls {stream_id} from {edge.upstream} (was {was.upstream})"
            kind = "pull-moved"
        else:
            continue
        events.append(ClusterEvent(at, kind, text, stream=stream_id, node=downstream))
    for (stream_id, downstream), was in old.items():
        if (stream_id, downstream) not in new:
            events.append(
                ClusterEvent(at, "pull-stopped",
                             f"{downstream} stopped pulling {stream_id} from {was.upstream}",
                             stream=stream_id, node=downstream)
            )  # fmt: skip
    return events
