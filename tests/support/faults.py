"""What the fault suite asks of a cluster once a fault is over: nothing lost, nothing stuck.

``FaultyStream`` is one stream on the suite's cluster (``tests/faults/conftest.py``):
its publisher, one player per node, and the registry. ``assert_settled`` waits until
the cluster has healed and then holds it to exact numbers: every remaining player
still in its session with frames flowing; no pull, claim or player count of a node
that is gone; the registry's rows, the topology REST and the broadcast object all
counting exactly the players that are connected; and no split brain in the history.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import pytest

from cluster.errors import RegistryUnavailable
from cluster.registry import Registry
from cluster.types import NodeGroup, StreamId
from tests.support.cluster import Pauses
from tests.support.nodes import NodeProcess, start_all
from tests.support.peers import Playing, Published
from tests.support.split_brain import assert_no_split_brain
from tests.support.waits import eventually

NODES = ("eu-1", "us-1", "us-2", "us-3")
ROLES = {"main origin": "eu-1", "secondary origin": "us-1", "tree parent": "us-2", "edge": "us-3"}
CHAIN = {("us-1", "eu-1"), ("us-2", "us-1"), ("us-3", "us-2")}
"""The tree the suite's stream starts from: (downstream, upstream)."""
US = NodeGroup("us")

RESUME_S = 30.0
"""How long a held player may wait for frames after a fault: generous, the machine is loaded;
the gaps themselves are measured (``Pauses``), not bounded tightly."""
SETTLE_S = 30.0
"""How long the registry and REST may take to agree with the players after a fault."""


@dataclass
class FaultyStream:
    stream_id: str
    nodes: dict[str, NodeProcess]
    registry: Registry
    published: Published
    players: dict[str, Playing]
    """The players still expected to play, by the node they are connected to."""

    def watch(self) -> dict[str, Pauses]:
        """Start measuring every player's pauses."""
        return {name: Pauses(playing) for name, playing in self.players.items()}

    def drop_players_of(self, name: str) -> None:
        """The node ``name`` died: its own players went with it; nobody else's may."""
        self.players.pop(name, None)


def restart_missing(nodes: Mapping[str, NodeProcess]) -> None:
    """Start again every node a previous test killed (all at once)."""
    missing = [node for node in nodes.values() if not node.running]
    if missing:
        start_all(missing, timeout_s=90)


async def held_tree(stream: FaultyStream, roles: Mapping[str, str]) -> bool:
    """Whether the registry shows the suite's starting tree (``CHAIN``) and its roles."""
    tree = await stream.registry.relay_tree(StreamId(stream.stream_id))
    if tree is None or {(e.downstream, e.upstream) for e in tree.pulls} != CHAIN:
        return False
    holders = {o.node_id for o in tree.secondary_origins if o.node_group == US}
    return tree.stream.origin_node == roles["main origin"] and holders == {
        roles["secondary origin"]
    }


async def frames_resume(stream: FaultyStream) -> None:
    """Every remaining player is still in its session and gets new frames."""
    for name, playing in stream.players.items():
        try:
            await playing.frames(playing.received + 10, timeout_s=RESUME_S)
        except TimeoutError:
            state = playing.player.pc.connectionState
            pytest.fail(f"the player on {name} got no frames for {RESUME_S:.0f} s ({state})")
        state = playing.player.pc.connectionState
        assert state == "connected", f"the player on {name} was dropped ({state})"


async def problems(stream: FaultyStream) -> list[str]:
    """What still disagrees with the players the test holds; empty once settled."""
    stream_id = StreamId(stream.stream_id)
    running = {name for name, node in stream.nodes.items() if node.running}
    try:
        tree = await stream.registry.relay_tree(stream_id)
        alive = {record.id for record in await stream.registry.live_nodes()}
    except RegistryUnavailable as error:
        return [str(error)]
    if tree is None or tree.stream.state != "live":
        return [f"stream {stream_id} is not live: {tree.stream.state if tree else 'unknown'}"]
    found: list[str] = []
    if alive != running:
        found.append(f"live nodes {sorted(alive)} are not the running ones {sorted(running)}")
    origin = tree.stream.origin_node
    carriers = {origin} | {edge.downstream for edge in tree.pulls}
    for edge in tree.pulls:
        if edge.downstream not in running:
            found.append(f"a stuck pull row of {edge.downstream}, which is not running")
        if edge.upstream not in carriers:
            found.append(f"{edge.downstream} pulls from {edge.upstream}, which carries nothing")
    holders = [o.node_id for o in tree.secondary_origins if o.node_group == US]
    if len(holders) != 1 or holders[0] not in running:
        found.append(f"the secondary origins in us are {holders}, not one running node")
    rows = {edge.downstream: edge.players for edge in tree.pulls} | {
        origin: tree.stream.origin_players
    }
    expected = {name: 1 for name in stream.players}
    if {n: c for n, c in rows.items() if c} != expected:
        found.append(f"the registry counts players {rows}, the test holds {expected}")
    found += await _rest_problems(stream, running, expected)
    return found


async def _rest_problems(
    stream: FaultyStream, running: set[str], expected: dict[str, int]
) -> list[str]:
    asked = stream.nodes[sorted(running)[0]]
    async with httpx.AsyncClient(base_url=asked.url, timeout=5) as http:
        try:
            topology = (await http.get(f"/rest/v2/streams/{stream.stream_id}/topology")).json()
            broadcast = (await http.get(f"/LiveApp/rest/v2/broadcasts/{stream.stream_id}")).json()
        except (httpx.HTTPError, ValueError) as error:
            return [f"REST on {asked.name} failed: {error}"]
    found = []
    shown = {entry["node"]: entry["players"] for entry in topology.get("nodes", [])}
    if {n: c for n, c in shown.items() if c} != expected:
        found.append(f"the topology counts players {shown}, the test holds {expected}")
    total = sum(expected.values())
    if topology.get("totals", {}).get("players") != total:
        found.append(f"the topology's total is {topology.get('totals')}, not {total}")
    if broadcast.get("webRTCViewerCount") != total:
        found.append(f"the broadcast counts {broadcast.get('webRTCViewerCount')}, not {total}")
    return found


async def assert_settled(stream: FaultyStream) -> float:
    """Frames resume everywhere, then the numbers become exact; how long settling took."""
    started = time.monotonic()
    await frames_resume(stream)
    last: list[str] = []

    async def agreed() -> bool:
        last[:] = await problems(stream)
        return not last

    try:
        await eventually(agreed, "the registry and REST agreeing with the players", SETTLE_S)
    except pytest.fail.Exception:
        pytest.fail("the cluster did not settle:\n" + "\n".join(last))
    await assert_no_split_brain(stream.registry, StreamId(stream.stream_id))
    return time.monotonic() - started


async def close_all(pauses: Mapping[str, Pauses]) -> None:
    for watching in pauses.values():
        await watching.close()


def longest(pauses: Mapping[str, Pauses], after: float) -> float:
    """The longest pause any player saw that started at or after ``after``."""
    return max((watching.longest(after) for watching in pauses.values()), default=0.0)
