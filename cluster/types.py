"""The control plane's shared vocabulary: read this module first.

Plain, frozen values only. They cross module boundaries (registry, heartbeat,
REST, placement) so that no module needs another's internals to talk about a
node or a stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NewType

NodeId = NewType("NodeId", str)
NodeGroup = NewType("NodeGroup", str)
StreamId = NewType("StreamId", str)
AppName = NewType("AppName", str)

NodeState = Literal["serving", "draining"]
StreamState = Literal["live", "ended", "orphaned"]
TermChange = Literal["claimed", "taken_over", "released", "cleared", "ended"]
"""How a secondary-origin term changed: begun from a free, lapsed or released slot
(``claimed``; also a holder's claim that renews its own term), begun by fencing out a
holder that stopped answering (``taken_over``), given up (``released``), voided when its
node restarted (``cleared``), or gone with its stream (``ended``)."""

NODE_GROUP_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Node groups (regions), as DESIGN §9 bounds them."""

STREAM_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
APP_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def parse_stream_id(raw: str) -> StreamId:
    """``raw`` as a stream id; ``ValueError`` saying what a stream id is, for any entry point."""
    if not STREAM_ID_PATTERN.fullmatch(raw):
        raise ValueError("a stream id is 1 to 128 of A-Z a-z 0-9 _ -")
    return StreamId(raw)


def parse_app_name(raw: str) -> AppName:
    """``raw`` as an app name; ``ValueError`` saying what an app name is."""
    if not APP_NAME_PATTERN.fullmatch(raw):
        raise ValueError("an app name is 1 to 64 of A-Z a-z 0-9 _ -")
    return AppName(raw)


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """What a node may take on; the selector normalises load by it."""

    cores: int
    max_players: int
    max_bitrate_kbps: int
    cpu_limit: int = 100
    """``server.cpu_limit``: percent of the node's cores above which it takes no new work."""


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """One heartbeat's measurements. CPU is a fraction of the node's cores (0..1)."""

    cpu: float = 0.0
    memory: float = 0.0
    players: int = 0
    publishers: int = 0
    pulls: int = 0
    bitrate_in_kbps: int = 0
    bitrate_out_kbps: int = 0


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """How a node introduces itself to the registry when it starts."""

    id: NodeId
    node_group: NodeGroup
    public_url: str
    internal_url: str
    capacity: NodeCapacity


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node as the registry holds it; ``heartbeat_at`` is on the registry's clock."""

    id: NodeId
    node_group: NodeGroup
    public_url: str
    internal_url: str
    state: NodeState
    capacity: NodeCapacity
    load: NodeLoad
    heartbeat_at: datetime
    registered_at: datetime
    reserved: int = 0
    """Clients routed here that have not shown up in its heartbeat yet (unexpired)."""


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """A stream's main origin claim."""

    id: StreamId
    app: AppName
    origin_node: NodeId
    origin_group: NodeGroup
    state: StreamState
    codecs: tuple[str, ...]
    lease_expires_at: datetime
    origin_players: int = 0
    """Players on the main origin itself, as it last reported."""


@dataclass(frozen=True, slots=True)
class SecondaryOrigin:
    """Who holds a region's secondary origin for a stream, and under which epoch.

    The epoch grows by one each time the role changes hands; a holder that
    renews with an older epoch has been fenced out and must stop serving.
    The registry keeps these in the ``regional_origin`` table, its first name
    for the role.
    """

    stream_id: StreamId
    node_group: NodeGroup
    node_id: NodeId
    epoch: int
    lease_expires_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """The outcome of a secondary-origin claim: ``won`` tells whether ``holder`` is the caller."""

    won: bool
    holder: SecondaryOrigin


@dataclass(frozen=True, slots=True)
class SecondaryOriginChange:
    """One row of the registry's history of secondary-origin terms, in the order written.

    ``at`` is the registry's clock at the change; ``lease_expires_at`` the term's lease
    after it (``at`` itself once the term ended). For claims, ``previous_lease_expires_at``
    is the lease the slot held just before (None for a slot nobody held): a claim by
    another node that is not a take-over must find it run out.
    """

    stream_id: StreamId
    node_group: NodeGroup
    node_id: NodeId
    epoch: int
    change: TermChange
    at: datetime
    lease_expires_at: datetime
    previous_lease_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PullEdge:
    """One live relay: ``downstream`` pulls ``stream_id`` from ``upstream``."""

    stream_id: StreamId
    downstream: NodeId
    upstream: NodeId
    since: datetime
    players: int = 0
    """Players on ``downstream``, as it last reported."""


@dataclass(frozen=True, slots=True)
class RelayTree:
    """A stream's whole relay tree as the registry records it."""

    stream: StreamRecord
    secondary_origins: tuple[SecondaryOrigin, ...] = field(default=())
    pulls: tuple[PullEdge, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """The cluster as one registry transaction saw it: what routing and the dashboard read.

    ``nodes`` are the live ones (heartbeat fresh on the registry's clock, any
    state); ``streams`` those not ended; ``secondary_origins`` the unexpired
    claims; ``pulls`` every recorded edge (a dead node's edge stays until its
    node clears it, so readers check ``downstream in alive``). Scoped to one
    stream (``Registry.snapshot(stream_id)``), the stream parts hold that
    stream only.
    """

    read_at: datetime
    nodes: tuple[NodeRecord, ...]
    streams: tuple[StreamRecord, ...] = field(default=())
    secondary_origins: tuple[SecondaryOrigin, ...] = field(default=())
    pulls: tuple[PullEdge, ...] = field(default=())

    @property
    def alive(self) -> dict[NodeId, NodeRecord]:
        return {n.id: n for n in self.nodes}

    def stream(self, stream_id: StreamId) -> StreamRecord | None:
        return next((s for s in self.streams if s.id == stream_id), None)

    def secondary_origin(self, stream_id: StreamId, group: NodeGroup) -> SecondaryOrigin | None:
        return next(
            (
                o
                for o in self.secondary_origins
                if o.stream_id == stream_id and o.node_group == group
            ),
            None,
        )

    def pulls_of(self, stream_id: StreamId) -> tuple[PullEdge, ...]:
        return tuple(e for e in self.pulls if e.stream_id == stream_id)


RoutingMode = Literal["redirect", "off"]
PlacementPolicy = Literal["spread", "fill"]
SessionKind = Literal["publish", "play"]


@dataclass(frozen=True, slots=True)
class Region:
    """A region's place on the map (``region.<name>.*`` keys), for sending clients to it.

    ``countries`` (ISO 3166 codes) and ``continents`` (GeoIP continent codes: EU,
    NA, AS, ...) map clients explicitly and win over distance; a region without
    coordinates is only reached through that mapping or as a last resort.
    """

    name: NodeGroup
    latitude: float | None = None
    longitude: float | None = None
    countries: frozenset[str] = frozenset()
    continents: frozenset[str] = frozenset()

    @property
    def located(self) -> bool:
        return self.latitude is not None and self.longitude is not None


@dataclass(frozen=True, slots=True)
class Location:
    """Where GeoIP places a client: country, continent and coordinates, each possibly unknown."""

    country: str | None
    continent: str | None
    latitude: float | None
    longitude: float | None
