"""Registry rows as the vocabulary's records, and load as row values.

The registry's queries return SQLAlchemy rows; everything above it speaks in
``cluster.types``. This is the one place one turns into the other.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from cluster.types import (
    AppName,
    NodeCapacity,
    NodeGroup,
    NodeId,
    NodeLoad,
    NodeRecord,
    NodeState,
    PullEdge,
    SecondaryOrigin,
    SecondaryOriginChange,
    StreamId,
    StreamRecord,
    StreamState,
)


def load_values(load: NodeLoad) -> dict[str, Any]:
    return {
        "cpu": load.cpu,
        "memory": load.memory,
        "players": load.players,
        "publishers": load.publishers,
        "pulls": load.pulls,
        "bitrate_in_kbps": load.bitrate_in_kbps,
        "bitrate_out_kbps": load.bitrate_out_kbps,
    }


def node_record(row: Row[Any]) -> NodeRecord:
    state: NodeState = row.state
    return NodeRecord(
        id=NodeId(row.id),
        node_group=NodeGroup(row.node_group),
        public_url=row.public_url,
        internal_url=row.internal_url,
        state=state,
        capacity=NodeCapacity(
            cores=row.cores,
            max_players=row.max_players,
            max_bitrate_kbps=row.max_bitrate_kbps,
            cpu_limit=row.cpu_limit,
        ),
        load=NodeLoad(
            cpu=float(row.cpu),
            memory=float(row.memory),
            players=row.players,
            publishers=row.publishers,
            pulls=row.pulls,
            bitrate_in_kbps=row.bitrate_in_kbps,
            bitrate_out_kbps=row.bitrate_out_kbps,
        ),
        heartbeat_at=row.heartbeat_at,
        registered_at=row.registered_at,
        reserved=row._mapping.get("reserved") or 0,  # RETURNING rows have no reservation
    )


def stream_record(row: Row[Any]) -> StreamRecord:
    state: StreamState = row.state
    return StreamRecord(
        id=StreamId(row.id),
        app=AppName(row.app),
        origin_node=NodeId(row.origin_node),
        origin_group=NodeGroup(row.origin_group),
        state=state,
        codecs=tuple(row.codecs.split(",")) if row.codecs else (),
        lease_expires_at=row.lease_expires_at,
        origin_players=row.origin_players,
    )


def secondary_origin_record(row: Row[Any]) -> SecondaryOrigin:
    return SecondaryOrigin(
        stream_id=StreamId(row.stream_id),
        node_group=NodeGroup(row.node_group),
        node_id=NodeId(row.node_id),
        epoch=row.epoch,
        lease_expires_at=row.lease_expires_at,
    )


def secondary_origin_change(row: Row[Any]) -> SecondaryOriginChange:
    return SecondaryOriginChange(
        stream_id=StreamId(row.stream_id),
        node_group=NodeGroup(row.node_group),
        node_id=NodeId(row.node_id),
        epoch=row.epoch,
        change=row.change,
        at=row.at,
        lease_expires_at=row.lease_expires_at,
        previous_lease_expires_at=row.previous_lease_expires_at,
    )


def pull_edge(row: Row[Any]) -> PullEdge:
    return PullEdge(
        stream_id=StreamId(row.stream_id),
        downstream=NodeId(row.downstream),
        upstream=NodeId(row.upstream),
        since=row.since,
        players=row.players,
    )
