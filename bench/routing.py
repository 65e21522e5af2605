"""Routing: ``python bench/routing.py [--quick]``.

1. **Selection time**, p50/p99 of one ``RegionAwareSelector.select`` over a table of
   10, 100, 1,000 and 10,000 nodes in 8 regions (random loads, some full, clients
   from six cities, plays with carriers, a few clients routed since the view).
   The baseline is the obvious implementation measured in the same run: score
   every node of the cluster for every client and take the best with room. The
   goal is p99 <= 50 us at 1,000 nodes: it is an in-memory decision.
2. **Redirects per second** one real node process answers (WHEP POSTs it sends
   elsewhere with a 307 and a ticket, one reservation each), against the same
   node's ``/healthz`` as the baseline.
3. **Burst**: 200 concurrent routing decisions (``/route``, publishes so that no
   stream is needed; a play takes the same reservation) sent to six nodes at once,
   each deciding from its own view; the worst overshoot of any node's
   ``server.maxViewers``. Goal: 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from cluster.registry.migrate import migrate
from cluster.routing.regions import region_order
from cluster.routing.selector import Ask, RegionAwareSelector, RoutingTable
from cluster.types import (
    Location,
    NodeCapacity,
    NodeGroup,
    NodeId,
    NodeLoad,
    NodeRecord,
    Region,
    StreamId,
)
from tests.support.nodes import NodeProcess, start_all
from tests.support.postgres import PostgresServer
from tests.support.regions import CHANGCHUN, LONDON, MILTON, forwarded, region_node

NOW = datetime.now(UTC)
REGIONS = tuple(
    Region(NodeGroup(name), lat, lon)
    for name, lat, lon in (
        ("eu", 50.1, 8.7), ("us-east", 39.0, -77.5), ("us-west", 37.4, -122.1),
        ("sa", -23.5, -46.6), ("ap-ne", 35.7, 139.7), ("ap-se", 1.35, 103.8),
        ("in", 19.1, 72.9), ("au", -33.9, 151.2),
    )
)  # fmt: skip
CLIENTS = (
    Location("GB", "EU", 51.5, -0.09), Location("US", "NA", 47.25, -122.31),
    Location("CN", "AS", 43.88, 125.32), Location("BR", "SA", -22.9, -43.2),
    Location("DE", "EU", 52.5, 13.4), None,
)  # fmt: skip
STREAMS = [StreamId(f"s{i}") for i in range(50)]
BURST = 200
BURST_LIMIT = 20


def cluster(
    count: int, rng: random.Random
) -> tuple[list[NodeRecord], dict[StreamId, frozenset[NodeId]]]:
    nodes = []
    for i in range(count):
        region = REGIONS[i % len(REGIONS)]
        cores = rng.choice((2, 4, 8, 16))
        max_players = rng.choice((200, 500, 1000))
        full = rng.random() < 0.1
        players = max_players if full else rng.randrange(max_players)
        nodes.append(NodeRecord(
            id=NodeId(f"n{i}"), node_group=region.name, public_url=f"http://127.0.0.1/n{i}",
            internal_url=f"http://127.0.0.1/n{i}", state="serving",
            capacity=NodeCapacity(cores, max_players, 100_000, cpu_limit=80),
            load=NodeLoad(cpu=rng.random() * 0.7, players=players,
                          bitrate_out_kbps=rng.randrange(80_000)),
            heartbeat_at=NOW, registered_at=NOW, reserved=rng.randrange(5),
        ))  # fmt: skip
    carriers = {s: frozenset(rng.choice(nodes).id for _ in range(3)) for s in STREAMS}
    return nodes, carriers


def full_scan(nodes: list[NodeRecord]) -> Callable[[Ask], NodeRecord | None]:
    """The baseline: every node scored for every client, nearest region with room first."""
    regions = {r.name: r for r in REGIONS}
    groups = {n.node_group for n in nodes}

    def select(ask: Ask) -> NodeRecord | None:
        order = region_order(ask.location, ask.home, regions, groups)
        rank = {g: i for i, g in enumerate(order)}
        best: tuple[int, float] | None = None
        chosen = None
        for node in nodes:
            c, load = node.capacity, node.load
            extra = ask.pending.get(node.id, 0)
            players = load.players + node.reserved + extra + 1
            other = max(load.bitrate_out_kbps / c.max_bitrate_kbps, load.cpu * 100 / c.cpu_limit)
            if players > c.max_players or other >= 1:
                continue
            score = (1 - max(players / c.max_players, other)) * c.cores
            key = (rank[node.node_group], -score)
            if best is None or key < best:
                best, chosen = key, node
        return chosen

    return select


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def selection(count: int, calls: int) -> tuple[float, float, float, float, float]:
    rng = random.Random(count)
    nodes, carriers = cluster(count, rng)
    started = time.perf_counter()
    table = RoutingTable(nodes, REGIONS, carriers)
    build_ms = (time.perf_counter() - started) * 1000
    selector = RegionAwareSelector("spread", 80)
    baseline = full_scan(nodes)
    asks = [
        Ask(rng.choice(("play", "publish")), rng.choice(STREAMS), rng.choice(CLIENTS),
            NodeGroup("eu"), {nodes[rng.randrange(count)].id: rng.randrange(1, 4)})
        for _ in range(256)
    ]  # fmt: skip
    ours: list[float] = []
    theirs: list[float] = []
    clock = time.perf_counter_ns
    for i in range(calls):
        ask = asks[i % len(asks)]
        t0 = clock()
        selector.select(ask, table)
        t1 = clock()
        ours.append((t1 - t0) / 1000)
        if i % 4 == 0:
            t0 = clock()
            baseline(ask)
            theirs.append((clock() - t0) / 1000)
    return (percentile(ours, 0.5), percentile(ours, 0.99), percentile(theirs, 0.5),
            percentile(theirs, 0.99), build_ms)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    args = parser.parse_args()
    calls = 4_000 if args.quick else 40_000
    print("Selection time (us per decision; baseline = score every node per client)")
    print(f"{'nodes':>7} {'p50':>8} {'p99':>8} {'base p50':>9} {'base p99':>9} "
          f"{'p99 ratio':>9} {'table ms':>9}")  # fmt: skip
    for count in (10, 100, 1_000, 10_000):
        p50, p99, b50, b99, build = selection(count, calls if count < 10_000 else calls // 4)
        print(f"{count:>7} {p50:>8.1f} {p99:>8.1f} {b50:>9.1f} {b99:>9.1f} "
              f"{b99 / p99:>8.1f}x {build:>9.2f}")  # fmt: skip
    asyncio.run(nodes_part(args.quick))


async def nodes_part(quick: bool) -> None:
    """Redirect rate and burst overshoot against real node processes (see module docstring)."""
    postgres = PostgresServer()
    postgres.start()
    workdir = Path(tempfile.mkdtemp(prefix="tierstream-bench-routing-"))
    try:
        seconds = 2.0 if quick else 5.0
        async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=64)) as http:
            url = await database(postgres, "bench_redirects")
            async with running(workdir / "rate", url, ("eu-1", "us-1"), 1_000_000) as (eu, us):
                redirects = await rate(seconds, lambda: http.post(
                    f"{us.url}/LiveApp/whip/bench-{random.randrange(1 << 30)}", content="v=0",
                    headers={"Content-Type": "application/sdp", **forwarded(LONDON)},
                ), 307)  # fmt: skip
                health = await rate(seconds, lambda: http.get(f"{us.url}/healthz"), 200)
                del eu
            print()
            print("Redirects one node answers (307 + ticket + one reservation each), 32 in flight")
            print(f"{'redirects/s':>12} {'healthz/s':>10} {'ratio':>7}")
            print(f"{redirects:>12.0f} {health:>10.0f} {redirects / health:>6.2f}x")

            url = await database(postgres, "bench_burst")
            names = ("eu-1", "eu-2", "us-1", "us-2", "ap-1", "ap-2")
            async with running(workdir / "burst", url, names, BURST_LIMIT) as nodes:
                worst, routed = await burst(http, list(nodes))
        print()
        print(f"Burst: {BURST} concurrent decisions at {len(names)} nodes, server.maxViewers="
              f"{BURST_LIMIT} each ({len(names) * BURST_LIMIT} places)")  # fmt: skip
        print(f"{'routed':>7} {'refused':>8} {'busiest':>8} {'worst overshoot':>16}")
        print(f"{sum(routed.values()):>7} {BURST - sum(routed.values()):>8} "
              f"{max(routed.values(), default=0):>8} {worst:>16}")  # fmt: skip
    finally:
        postgres.stop()


async def database(postgres: PostgresServer, name: str) -> str:
    url = await postgres.create_database(name)
    await migrate(url)
    return url


@contextlib.asynccontextmanager
async def running(
    workdir: Path, url: str, names: Sequence[str], max_players: int
) -> AsyncIterator[tuple[NodeProcess, ...]]:
    """Node processes named ``<region>-<n>``, started together, stopped by PID."""
    limit = {"server.maxViewers": str(max_players), "server.log_level": "WARN"}
    nodes = tuple(region_node(workdir, name, name.split("-")[0], url, **limit) for name in names)
    try:
        await asyncio.to_thread(start_all, list(nodes), 120.0)
        await asyncio.sleep(2.0)  # a few heartbeats: every node's view lists every node
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def rate(
    seconds: float, call: Callable[[], Awaitable[httpx.Response]], status: int
) -> float:  # fmt: skip
    """Answers per second with 32 requests in flight for ``seconds``; every answer checked."""
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            answer = await call()
            if answer.status_code != status:
                raise RuntimeError(f"expected {status}, got {answer.status_code}: {answer.text}")
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(32)))
    return done / (time.monotonic() - started)


async def burst(http: httpx.AsyncClient, nodes: list[NodeProcess]) -> tuple[int, dict[str, int]]:
    """``BURST`` routing decisions at every node at once: the worst overshoot of a limit."""
    cities = (LONDON, MILTON, CHANGCHUN)
    answers = await asyncio.gather(*(
        http.get(f"{nodes[i % len(nodes)].url}/LiveApp/rest/v2/route",
                 params={"streamId": f"burst-{i % 3}", "type": "publish"},
                 headers=forwarded(cities[i % 3]))
        for i in range(BURST)
    ))  # fmt: skip
    routed: dict[str, int] = {}
    for answer in answers:
        if answer.status_code == 200:
            routed[answer.json()["node"]] = routed.get(answer.json()["node"], 0) + 1
    return max((max(0, n - BURST_LIMIT) for n in routed.values()), default=0), routed


if __name__ == "__main__":
    main()
