"""Which node serves a publish or play: the selector over the cluster view, plus reservations.

The decision itself is pure and in memory (``cluster.routing.selector`` over a
table rebuilt once per cluster view); what this adds is the one registry write
that makes it safe: a reservation on the chosen node, so routers on every node
deciding from the same view cannot all send a burst to the same place. A node
that refuses the reservation (it filled up since the view was read) is left out
and the next best chosen.

When the view is older than ``cluster.viewStaleMs`` (the registry is away) or
the registry refuses to reserve, the node does not route elsewhere: it serves
the client itself, under its own limits.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from cluster.errors import RegistryUnavailable
from cluster.registry import Registry
from cluster.routing.geoip import GeoIp, IpAddress
from cluster.routing.selector import Ask, RegionAwareSelector, RoutingTable
from cluster.routing.view import ClusterView
from cluster.settings import Settings
from cluster.tokens import SpentTickets
from cluster.types import (
    ClusterSnapshot,
    Location,
    NodeGroup,
    NodeId,
    NodeRecord,
    SessionKind,
    StreamId,
)

logger = logging.getLogger(__name__)

ATTEMPTS = 3
"""Nodes tried for one client before giving up (each refused its reservation just now)."""

Outcome = Literal["here", "there", "nowhere"]


@dataclass(frozen=True, slots=True)
class Decision:
    """``here``: serve locally; ``there``: send the client to ``node``; ``nowhere``: no room."""

    outcome: Outcome
    reason: str
    node: NodeRecord | None = None
    reserved: bool = False
    location: Location | None = None


def carriers(snapshot: ClusterSnapshot) -> dict[StreamId, frozenset[NodeId]]:
    """Per live stream, the nodes that already have it: main origin, secondary origins, pullers."""
    found: dict[StreamId, set[NodeId]] = collections.defaultdict(set)
    for stream in snapshot.streams:
        if stream.state == "live":
            found[stream.id].add(stream.origin_node)
    for origin in snapshot.secondary_origins:
        if origin.stream_id in found:
            found[origin.stream_id].add(origin.node_id)
    for edge in snapshot.pulls:
        if edge.stream_id in found:
            found[edge.stream_id].add(edge.downstream)
    return {stream_id: frozenset(nodes) for stream_id, nodes in found.items()}


class Router:
    """Decides for one node; owns its GeoIP database and the clients it routed since the view."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        registry: Registry,
        view: ClusterView,
        geoip: GeoIp | None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._view = view
        self.geoip = geoip
        self._table_of: ClusterSnapshot | None = None
        self._table: RoutingTable | None = None
        self._pending: collections.Counter[NodeId] = collections.Counter()
        """Clients this node reserved room for since the view it decides from was read."""
        self._arrived = 0
        self.tickets = SpentTickets()
        """The redirect tickets this node honoured: each opens one session."""

    @classmethod
    def open(
        cls, settings: Callable[[], Settings], registry: Registry, view: ClusterView
    ) -> Router:
        """With the configured GeoIP database; a missing or corrupt one stops start-up."""
        path = settings().geoip_db
        return cls(settings, registry, view, GeoIp(path) if path is not None else None)

    def close(self) -> None:
        if self.geoip is not None:
            self.geoip.close()

    def table(self) -> RoutingTable | None:
        """The routing table of the current view; None while the view is missing or stale."""
        snapshot = self._view.snapshot
        if snapshot is None or self._view.age_s > self._settings().view_stale_s:
            return None
        if snapshot is not self._table_of:
            self._table = RoutingTable(snapshot.nodes, self._settings().regions, carriers(snapshot))
            self._table_of = snapshot
            self._pending.clear()  # the new view's reservations already count them
        return self._table

    def locate(self, client: IpAddress | None) -> Location | None:
        if self.geoip is None or client is None:
            return None
        return self.geoip.locate(client)

    async def decide(
        self, kind: SessionKind, stream_id: StreamId, client: IpAddress | None
    ) -> Decision:
        """Where this client should be served, with room reserved there."""
        settings = self._settings()
        table = self.table()
        if table is None:
            return Decision("here", f"the cluster view is older than {settings.view_stale_s:g} s")
        snapshot = self._view.snapshot
        assert snapshot is not None
        stream = snapshot.stream(stream_id)
        if kind == "play" and (stream is None or stream.state != "live"):
            return Decision("here", f"stream {stream_id} is not live in the cluster view")
        location = self.locate(client)
        excluded: set[NodeId] = set()
        selector = RegionAwareSelector(settings.placement, settings.fill_target)
        for _ in range(ATTEMPTS):
            ask = Ask(kind, stream_id, location, settings.node_group, self._pending,
                      frozenset(excluded), settings.node_id)  # fmt: skip
            choice = selector.select(ask, table)
            if choice is None:
                break
            target = choice.node
            try:
                reserved = await self._registry.reserve(target.id, settings.reservation_s)
            except RegistryUnavailable as error:
                logger.warning("could not reserve room on %s (%s); serving here", target.id, error)
                return Decision("here", "the registry could not take a reservation")
            logger.debug(
                "%s of %s from %s (%s): chose %s in %s, reservation %s",
                kind, stream_id, client, location, target.id, target.node_group,
                "taken" if reserved else "refused",
            )  # fmt: skip
            if reserved:
                self._pending[target.id] += 1
                outcome: Outcome = "here" if target.id == settings.node_id else "there"
                why = "carries the stream" if choice.carries else f"best in {target.node_group}"
                return Decision(outcome, why, target, reserved=True, location=location)
            excluded.add(target.id)
        return Decision("nowhere", "no node in any region has room", location=location)

    @contextlib.contextmanager
    def arriving(self, reserved: bool) -> Iterator[Callable[[], None]]:
        """A client is being served here; ``reserved``: the cluster kept room here for it
        (its ticket says so, or this node decided to keep it).

        Its reservation must give way to it exactly when it starts to count as a
        player: the heartbeat subtracts the settled arrivals from the reservations in
        the same write that records the players it sampled at the same instant, so a
        client is never counted twice (reserved and playing) nor not at all (its
        reservation gone while its pull or negotiation is still under way, which would
        let other routers fill its place). Call the yielded ``settle`` at that moment;
        if the client fails first, leaving the block settles it (its room goes back).
        """
        settled = not reserved

        def settle() -> None:
            nonlocal settled
            if not settled:
                settled = True
                self._arrived += 1

        try:
            yield settle
        finally:
            settle()

    def take_arrivals(self) -> int:
        """Arrivals settled since the last call: the heartbeat settles them with the registry.

        It samples the node's load right after, with no wait between: both describe
        the same instant."""
        arrived, self._arrived = self._arrived, 0
        return arrived

    def regions(self) -> list[dict[str, object]]:
        """Per region: nodes, capacity, use and whether it accepts new clients."""
        snapshot = self._view.snapshot
        nodes: tuple[NodeRecord, ...] = snapshot.nodes if snapshot is not None else ()
        groups: dict[NodeGroup, list[NodeRecord]] = collections.defaultdict(list)
        for record in nodes:
            groups[record.node_group].append(record)
        configured: Mapping[NodeGroup, object] = {r.name: r for r in self._settings().regions}
        answer: list[dict[str, object]] = []
        for group in sorted(set(groups) | set(configured)):
            members = groups.get(group, [])
            serving = [n for n in members if n.state == "serving"]
            capacity = sum(n.capacity.max_players for n in serving)
            used = sum(n.load.players + n.reserved for n in serving)
            table = self.table()
            accepting = table is not None and any(
                table.entries[n.id].has_room(0) for n in serving if n.id in table.entries
            )
            answer.append({
                "region": group,
                "nodes": len(members),
                "serving": len(serving),
                "capacity": capacity,
                "used": used,
                "free": round(max(0.0, 1 - used / capacity), 4) if capacity else 0.0,
                "accepting": accepting,
            })  # fmt: skip
        return answer
