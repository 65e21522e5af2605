"""Small builders for the values registry tests pass around."""

from __future__ import annotations

from cluster.types import NodeCapacity, NodeGroup, NodeId, NodeInfo


def node_info(name: str, group: str = "eu", *, cores: int = 4) -> NodeInfo:
    """A node named ``name`` in ``group`` with made-up URLs on 127.0.0.1."""
    return NodeInfo(
        id=NodeId(name),
        node_group=NodeGroup(group),
        public_url=f"http://127.0.0.1:5080/{name}",
        internal_url=f"http://127.0.0.1:5081/{name}",
        capacity=NodeCapacity(cores=cores, max_players=1000, max_bitrate_kbps=100_000),
    )
