"""A stream's relay tree as people read it: who originates, who pulls from whom, who watches where.

Built from one registry read (``Registry.relay_tree``) and the live nodes, so
the picture is consistent. Players are counted where they are connected, once
each; a node pulling from another is a relay hop, never a player. Nodes that
stopped heartbeating are left out: what is shown is what can still serve.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cluster.types import NodeId, NodeRecord, RelayTree


def topology(tree: RelayTree, alive: Mapping[NodeId, NodeRecord]) -> dict[str, Any]:
    stream = tree.stream
    live = stream.state != "ended"
    secondary = {o.node_id: o for o in tree.secondary_origins if o.node_id in alive}
    nodes: list[dict[str, Any]] = []
    if live and stream.origin_node in alive:
        nodes.append(
            {
                "node": stream.origin_node,
                "nodeGroup": stream.origin_group,
                "role": "main-origin",
                "upstream": None,
                "players": stream.origin_players,
            }
        )
    for edge in tree.pulls:
        record = alive.get(edge.downstream)
        if not live or record is None:
            continue
        role = "secondary-origin" if edge.downstream in secondary else "edge"
        nodes.append(
            {
                "node": edge.downstream,
                "nodeGroup": record.node_group,
                "role": role,
                "upstream": edge.upstream,
                "players": edge.players,
            }
        )
    regions: dict[str, dict[str, int]] = {}
    for entry in nodes:
        region = regions.setdefault(entry["nodeGroup"], {"players": 0, "nodes": 0})
        region["players"] += entry["players"]
        region["nodes"] += 1
    return {
        "streamId": stream.id,
        "app": stream.app,
        "state": stream.state,
        "codecs": list(stream.codecs),
        "mainOrigin": {"node": stream.origin_node, "nodeGroup": stream.origin_group},
        "secondaryOrigins": [
            {"nodeGroup": o.node_group, "node": o.node_id, "epoch": o.epoch}
            for o in secondary.values()
        ],
        "pulls": [
            {"downstream": e.downstream, "upstream": e.upstream, "since": e.since.isoformat()}
            for e in tree.pulls
            if live and e.downstream in alive
        ],
        "nodes": nodes,
        "regions": regions,
        "totals": {
            "players": sum(entry["players"] for entry in nodes),
            "nodes": len(nodes),
            "pulls": sum(1 for entry in nodes if entry["upstream"] is not None),
        },
    }
