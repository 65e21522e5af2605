"""The node selector, rule by rule: region mapping, distance, spill-over, capacity, policies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cluster.routing.regions import great_circle_km, region_order
from cluster.routing.selector import Ask, RegionAwareSelector, RoutingTable
from cluster.types import (
    Location,
    NodeCapacity,
    NodeGroup,
    NodeId,
    NodeLoad,
    NodeRecord,
    NodeState,
    Region,
    StreamId,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REGIONS = (
    Region(NodeGroup("eu"), 50.1, 8.7, countries=frozenset({"GB"})),
    Region(NodeGroup("us"), 39.0, -77.5),
    Region(NodeGroup("ap"), 35.7, 139.7, continents=frozenset({"AS", "OC"})),
)
LONDON = Location("GB", "EU", 51.5, -0.09)
MILTON = Location("US", "NA", 47.25, -122.31)
CHANGCHUN = Location("CN", "AS", 43.88, 125.32)
LISBON = Location("PT", "EU", 38.7, -9.1)
STREAM = StreamId("s1")


def node(
    name: str,
    group: str,
    *,
    players: int = 0,
    max_players: int = 100,
    cores: int = 4,
    cpu: float = 0.0,
    bitrate: int = 0,
    reserved: int = 0,
    state: NodeState = "serving",
) -> NodeRecord:
    return NodeRecord(
        id=NodeId(name),
        node_group=NodeGroup(group),
        public_url=f"http://127.0.0.1/{name}",
        internal_url=f"http://127.0.0.1/{name}",
        state=state,
        capacity=NodeCapacity(cores, max_players, 10_000, cpu_limit=80),
        load=NodeLoad(cpu=cpu, players=players, bitrate_out_kbps=bitrate),
        heartbeat_at=NOW,
        registered_at=NOW,
        reserved=reserved,
    )


def choose(
    nodes: list[NodeRecord],
    location: Location | None,
    kind: str = "play",
    home: str = "eu",
    carriers: frozenset[str] = frozenset(),
    policy: str = "spread",
    pending: dict[str, int] | None = None,
    receiver: str | None = None,
) -> str | None:
    table = RoutingTable(
        nodes, REGIONS, {STREAM: frozenset(NodeId(c) for c in carriers)} if carriers else {}
    )
    ask = Ask(
        kind,  # type: ignore[arg-type]
        STREAM,
        location,
        NodeGroup(home),
        pending={NodeId(k): v for k, v in (pending or {}).items()},
        receiver=NodeId(receiver) if receiver else None,
    )
    choice = RegionAwareSelector(policy, 80).select(ask, table)  # type: ignore[arg-type]
    return choice.node.id if choice else None


ONE_EACH = [node("eu-1", "eu"), node("us-1", "us"), node("ap-1", "ap")]


@pytest.mark.parametrize(
    ("location", "home", "expected"),
    [
        (LONDON, "us", "eu-1"),
        (MILTON, "eu", "us-1"),
        (CHANGCHUN, "eu", "ap-1"),
        (LISBON, "ap", "eu-1"),
        (None, "us", "us-1"),
        (Location(None, None, None, None), "ap", "ap-1"),
    ],
    ids=[
        "London maps to eu by country",
        "Milton is nearest us",
        "Changchun maps to ap by continent",
        "Lisbon is nearest eu",
        "no location: the receiving node's region",
        "a location without coordinates: the receiving node's region",
    ],
)
def test_region(location: Location | None, home: str, expected: str) -> None:
    assert choose(ONE_EACH, location, home=home) == expected


def test_explicit_mapping_wins_over_distance() -> None:
    regions = {r.name: r for r in REGIONS}
    # Perth (AU, OC) is nearer ap than us anyway; a US client mapped by continent to ap is not.
    mapped = {**regions, NodeGroup("ap"): Region(NodeGroup("ap"), 35.7, 139.7, frozenset({"US"}))}
    order = region_order(MILTON, NodeGroup("eu"), mapped, mapped)
    assert order[0] == "ap"
    assert order[1:] == ["us", "eu"]


def test_great_circle_distance_london_to_frankfurt() -> None:
    assert 630 < great_circle_km(51.5, -0.12, 50.1, 8.7) < 650


def test_full_region_spills_over_to_the_next_nearest() -> None:
    nodes = [node("eu-1", "eu", players=100), node("us-1", "us"), node("ap-1", "ap")]
    assert choose(nodes, LONDON) == "us-1"
    assert choose(nodes, CHANGCHUN) == "ap-1"


def test_reservations_count_against_room() -> None:
    nodes = [node("eu-1", "eu", players=90, reserved=10), node("us-1", "us")]
    assert choose(nodes, LONDON) == "us-1"


def test_pending_clients_spread_a_burst() -> None:
    nodes = [node("eu-1", "eu", max_players=10), node("eu-2", "eu", max_players=10)]
    assert choose(nodes, LONDON, pending={"eu-1": 3}) == "eu-2"
    assert choose(nodes, LONDON, pending={"eu-1": 9, "eu-2": 10}) == "eu-1"
    assert choose(nodes, LONDON, pending={"eu-1": 10, "eu-2": 10}) is None


def test_nobody_with_room_anywhere_gives_none() -> None:
    nodes = [node("eu-1", "eu", players=100), node("us-1", "us", cpu=0.8)]
    assert choose(nodes, LONDON) is None


def test_draining_nodes_are_never_chosen() -> None:
    nodes = [node("eu-1", "eu", state="draining"), node("us-1", "us")]
    assert choose(nodes, LONDON) == "us-1"


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (node("big", "eu", cores=16, cpu=0.10), node("small", "eu", cores=1, cpu=0.01), "big"),
        (node("busy", "eu", players=90), node("idle", "eu", players=10), "idle"),
        (node("hot", "eu", cpu=0.79), node("cool", "eu", cpu=0.2, players=50), "cool"),
        (node("loud", "eu", bitrate=9_999), node("quiet", "eu", players=60), "quiet"),
    ],
    ids=[
        "a 16-core node at 10% beats a 1-core node at 1%",
        "fewer players against the same limit",
        "CPU near server.cpu_limit counts as nearly full",
        "outgoing bitrate near its limit counts as nearly full",
    ],
)
def test_spread_picks_the_most_free_normalised_capacity(
    first: NodeRecord, second: NodeRecord, expected: str
) -> None:
    assert choose([first, second], LONDON) == expected
    assert choose([second, first], LONDON) == expected


def test_a_node_over_any_limit_is_never_chosen() -> None:
    nodes = [node("over-cpu", "eu", cpu=0.81, cores=64), node("us-1", "us", players=99)]
    assert choose(nodes, LONDON) == "us-1"


def test_fill_takes_the_busiest_node_under_the_target_then_spreads() -> None:
    nodes = [node("a", "eu", players=10), node("b", "eu", players=50), node("c", "eu")]
    assert choose(nodes, LONDON, policy="fill") == "b"
    past = [node("a", "eu", players=85), node("b", "eu", players=90), node("c", "eu", players=95)]
    assert choose(past, LONDON, policy="fill") == "a"
    assert choose(nodes, LONDON, policy="spread") == "c"


def test_play_prefers_a_node_that_carries_the_stream() -> None:
    nodes = [node("eu-1", "eu", players=50), node("eu-2", "eu")]
    assert choose(nodes, LONDON, carriers=frozenset({"eu-1"})) == "eu-1"
    assert choose(nodes, LONDON, kind="publish", carriers=frozenset({"eu-1"})) == "eu-2"


def test_a_full_carrier_gives_way_to_another_node_of_the_region() -> None:
    nodes = [node("eu-1", "eu", players=100), node("eu-2", "eu"), node("us-1", "us")]
    assert choose(nodes, LONDON, carriers=frozenset({"eu-1", "us-1"})) == "eu-2"


def test_regions_without_coordinates_come_last() -> None:
    nodes = [node("eu-1", "eu", players=100), node("lab-1", "lab"), node("us-1", "us")]
    assert choose(nodes, LONDON) == "us-1"
    assert choose([node("eu-1", "eu", players=100), node("lab-1", "lab")], LONDON) == "lab-1"


def test_the_receiving_node_keeps_a_client_it_is_nearly_as_good_for() -> None:
    nodes = [node("eu-1", "eu", players=15), node("eu-2", "eu", players=10), node("us-1", "us")]
    assert choose(nodes, LONDON, kind="publish", receiver="eu-1") == "eu-1"
    assert choose(nodes, LONDON, kind="publish", receiver="us-1") == "eu-2"
    busy = [node("eu-1", "eu", players=40), node("eu-2", "eu", players=10)]
    assert choose(busy, LONDON, kind="publish", receiver="eu-1") == "eu-2"


def test_a_receiving_node_without_the_stream_gives_a_play_to_a_carrier() -> None:
    nodes = [node("eu-1", "eu", players=15), node("eu-2", "eu")]
    assert choose(nodes, LONDON, carriers=frozenset({"eu-1"}), receiver="eu-2") == "eu-1"
    near = [node("eu-1", "eu", players=5), node("eu-2", "eu")]
    assert choose(near, LONDON, carriers=frozenset({"eu-1", "eu-2"}), receiver="eu-1") == "eu-1"
