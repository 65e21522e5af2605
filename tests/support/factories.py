"""Small builders for the values registry tests pass around."""

from __future__ import annotations

from datetime import UTC, datetime

from cluster.types import NodeCapacity, NodeGroup, NodeId, NodeInfo, NodeLoad, NodeRecord, NodeState

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def node_info(name: str, group: str = "eu", *, cores: int = 4) -> NodeInfo:
    """A node named ``name`` in ``group`` with made-up URLs on 127.0.0.1."""
    return NodeInfo(
        id=NodeId(name),
        node_group=NodeGroup(group),
        public_url=f"http://127.0.0.1:5080/{name}",
        internal_url=f"http://127.0.0.1:5081/{name}",
        capacity=NodeCapacity(cores=cores, max_players=1000, max_bitrate_kbps=100_000),
    )


def node_record(
    name: str, group: str | None = None, state: NodeState = "serving", seen: datetime = EPOCH
) -> NodeRecord:
    """A live node as the registry lists it; its region defaults to ``name``'s prefix (``eu-1``)."""
    return NodeRecord(
        id=NodeId(name),
        node_group=NodeGroup(group or name.split("-")[0]),
        public_url=f"http://127.0.0.1/{name}",
        internal_url=f"http://127.0.0.1/{name}",
        state=state,
        capacity=NodeCapacity(cores=2, max_players=1000, max_bitrate_kbps=10**6),
        load=NodeLoad(),
        heartbeat_at=seen,
        registered_at=seen,
    )
