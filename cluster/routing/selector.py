"""Which node should serve a client: a one-method ``NodeSelector`` over a precomputed table.

Pure and in memory: the table is built once per cluster view (each heartbeat)
and a decision reads it, so it costs microseconds however large the cluster.

- **Room** and **best** compare free capacity normalised by the node's limits:
  the tightest of players (with reservations) against ``server.maxViewers``,
  outgoing bitrate against ``server.maxBitrateKbps`` and CPU against
  ``server.cpu_limit``; a node at or over any limit is never chosen. "Best"
  weighs what is free by the node's cores, so a 16-core node at 10 % beats a
  1-core node at 1 %.
- **Regions** are tried in the order ``regions.region_order`` gives; a region
  without room spills over to the next.
- A **play** prefers a node of the region that already carries the stream (no
  new pull); a **publish** takes the best node.
- **spread** takes the node with most free capacity; **fill** the busiest node
  still under the fill target (fewer busy nodes, so an autoscaler can remove
  idle ones), and spreads once every node is past it.
- ``pending`` counts clients this node routed since the table was built, on top
  of the reservations the table already holds, so a burst decided between two
  heartbeats spreads instead of piling onto one node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cluster.routing.regions import region_order
from cluster.types import (
    Location,
    NodeGroup,
    NodeId,
    NodeRecord,
    PlacementPolicy,
    Region,
    SessionKind,
    StreamId,
)

NO_PENDING: Mapping[NodeId, int] = {}
STICKY = 0.10
"""A receiving node of the chosen region keeps the client when its load is within this share
of its tightest limit of the best node's (and, for a play, it carries the stream whenever the
best does): a redirect costs the client a round trip, worth it only for a real difference."""
ORDER_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Ask:
    """One client to place: what it wants, where it is, who received it."""

    kind: SessionKind
    stream_id: StreamId
    location: Location | None
    home: NodeGroup
    """The receiving node's region: where a client GeoIP cannot place is taken to be."""
    pending: Mapping[NodeId, int] = field(default_factory=lambda: NO_PENDING)
    excluded: frozenset[NodeId] = frozenset()
    """Nodes that refused a reservation for this client just now."""
    receiver: NodeId | None = None
    """The node the client reached; it keeps a client it is nearly as good for (``STICKY``)."""


@dataclass(frozen=True, slots=True)
class Choice:
    node: NodeRecord
    carries: bool
    """The node already has the stream (a play needs no new pull there)."""


@dataclass(slots=True)
class _Entry:
    """A node's numbers, computed once per table."""

    node: NodeRecord
    players: int
    """Players plus reservations the registry holds for it."""
    other_used: float
    """The tightest of bitrate and CPU, as a fraction of its limit."""
    base_used: float
    base_score: float

    def used(self, extra: int) -> float:
        """Load as a fraction of the tightest limit with one more client (and ``extra`` routed)."""
        return max((self.players + extra + 1) / self.node.capacity.max_players, self.other_used)

    def has_room(self, extra: int) -> bool:
        return self.players + extra + 1 <= self.node.capacity.max_players and self.other_used < 1.0

    def score(self, extra: int) -> float:
        """Free capacity in cores after this client: what spread maximises."""
        return (1.0 - self.used(extra)) * self.node.capacity.cores


def _entry(node: NodeRecord) -> _Entry:
    capacity, load = node.capacity, node.load
    other = max(
        load.bitrate_out_kbps / capacity.max_bitrate_kbps,
        load.cpu * 100 / capacity.cpu_limit,
    )
    entry = _Entry(node, load.players + node.reserved, other, 0.0, 0.0)
    entry.base_used = entry.used(0)
    entry.base_score = entry.score(0)
    return entry


class RoutingTable:
    """The serving nodes of one cluster view, by region, in the orders the policies walk."""

    def __init__(
        self,
        nodes: Iterable[NodeRecord],
        regions: Iterable[Region],
        carriers: Mapping[StreamId, frozenset[NodeId]],
    ) -> None:
        self.regions: dict[NodeGroup, Region] = {r.name: r for r in regions}
        self.carriers = carriers
        by_region: dict[NodeGroup, list[_Entry]] = {}
        self.entries: dict[NodeId, _Entry] = {}
        for node in nodes:
            if node.state != "serving":
                continue
            entry = _entry(node)
            self.entries[node.id] = entry
            by_region.setdefault(node.node_group, []).append(entry)
        self.by_score = {
            g: sorted(e, key=lambda x: (-x.base_score, x.node.id)) for g, e in by_region.items()
        }
        """Most free capacity first: spread's order."""
        self.by_load = {
            g: sorted(e, key=lambda x: (-x.base_used, x.node.id)) for g, e in by_region.items()
        }
        """Busiest first: fill's order."""
        self._orders: dict[tuple[Location | None, NodeGroup], list[NodeGroup]] = {}

    def region_order(self, location: Location | None, home: NodeGroup) -> list[NodeGroup]:
        """``regions.region_order`` for this table's regions, remembered per client place.

        Clients come from a limited set of GeoIP places (city coordinates), so the
        distance sort is paid once per place and view, not once per client.
        """
        key = (location, home)
        order = self._orders.get(key)
        if order is None:
            if len(self._orders) >= ORDER_CACHE_SIZE:
                self._orders.clear()
            order = region_order(location, home, self.regions, self.by_score)
            self._orders[key] = order
        return order

    def node_groups(self) -> Sequence[NodeGroup]:
        return list(self.by_score)


class NodeSelector(Protocol):
    """Picks the node for one client, or None when no node anywhere has room."""

    def select(self, ask: Ask, table: RoutingTable) -> Choice | None: ...


class RegionAwareSelector:
    """Nearest region with room, then the best node in it by the placement policy."""

    def __init__(self, policy: PlacementPolicy, fill_target_percent: int) -> None:
        self._policy = policy
        self._fill_target = fill_target_percent / 100

    def select(self, ask: Ask, table: RoutingTable) -> Choice | None:
        carriers = table.carriers.get(ask.stream_id, frozenset()) if ask.kind == "play" else ()
        order = table.region_order(ask.location, ask.home)
        for group in order:
            if carriers:
                carrying = [
                    table.entries[n] for n in carriers
                    if n in table.entries and table.entries[n].node.node_group == group
                ]  # fmt: skip
                best = self._best(carrying, ask, sort=True)
                if best is not None:
                    return self._sticky(Choice(best.node, carries=True), ask, table, carriers)
            ordered = table.by_load[group] if self._policy == "fill" else table.by_score[group]
            best = self._best(ordered, ask, sort=False)
            if best is not None:
                choice = Choice(best.node, carries=best.node.id in carriers)
                return self._sticky(choice, ask, table, carriers)
        return None

    @staticmethod
    def _sticky(
        choice: Choice, ask: Ask, table: RoutingTable, carriers: Iterable[NodeId]
    ) -> Choice:
        """The receiving node instead of ``choice`` when it is nearly as good (``STICKY``)."""
        here = table.entries.get(ask.receiver) if ask.receiver is not None else None
        if here is None or here.node.id == choice.node.id or ask.receiver in ask.excluded:
            return choice
        if here.node.node_group != choice.node.node_group:
            return choice
        carries = here.node.id in carriers
        if choice.carries and not carries:
            return choice
        extra = ask.pending.get(here.node.id, 0)
        best = table.entries[choice.node.id]
        best_used = best.used(ask.pending.get(best.node.id, 0))
        if here.has_room(extra) and here.used(extra) <= best_used + STICKY:
            return Choice(here.node, carries=carries)
        return choice

    def _best(self, entries: Sequence[_Entry], ask: Ask, *, sort: bool) -> _Entry | None:
        if sort:
            key = (lambda e: -e.base_used) if self._policy == "fill" else (lambda e: -e.base_score)
            entries = sorted(entries, key=key)
        if self._policy == "fill":
            filled = self._fill(entries, ask)
            if filled is not None:
                return filled
            entries = sorted(entries, key=lambda e: -e.base_score)
        return self._spread(entries, ask)

    @staticmethod
    def _spread(entries: Sequence[_Entry], ask: Ask) -> _Entry | None:
        """Most free capacity. Routed clients only lower a score, so the walk stops early."""
        best: _Entry | None = None
        best_score = float("-inf")
        for entry in entries:
            if entry.base_score <= best_score:
                break
            node_id = entry.node.id
            if node_id in ask.excluded:
                continue
            extra = ask.pending.get(node_id, 0)
            if not entry.has_room(extra):
                continue
            score = entry.base_score if not extra else entry.score(extra)
            if score > best_score:
                best, best_score = entry, score
        return best

    def _fill(self, entries: Sequence[_Entry], ask: Ask) -> _Entry | None:
        """The busiest node that stays under the fill target with this client."""
        best: _Entry | None = None
        best_used = float("-inf")
        for entry in entries:
            if entry.base_used <= best_used:
                break
            node_id = entry.node.id
            if node_id in ask.excluded:
                continue
            extra = ask.pending.get(node_id, 0)
            used = entry.used(extra)
            if used <= self._fill_target and entry.has_room(extra) and used > best_used:
                best, best_used = entry, used
        return best
