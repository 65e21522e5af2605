"""Registry operation rates on both back-ends: ``python bench/registry.py [--quick]``.

For 100 and 1,000 simulated nodes, on a private PostgreSQL it starts itself and on
an embedded SQLite file: heartbeats per second (rounds in which every node
heartbeats, ``--concurrency`` in flight), secondary-origin claims per second
(every node claims its region's secondary origin of a new stream each round, so
most claims lose and read the holder back), and the latency of listing every
live node (sequential, p50/p99).

One process stands in for all the nodes, through one connection pool; real
nodes each hold their own connections, so this measures the registry plus one
client, not a fleet. The last column divides each embedded figure by the
PostgreSQL figure of the same row and run: above 1 means the embedded registry
is faster for rates, slower for latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

# Run as a script: the repository root goes on sys.path before our own imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.registry import Registry
from cluster.registry.migrate import migrate
from cluster.types import NodeCapacity, NodeGroup, NodeId, NodeInfo, NodeLoad, StreamId
from tests.support.postgres import PostgresServer

GROUPS = [NodeGroup(name) for name in ("eu", "us", "ap", "sa")]
NODE_COUNTS = (100, 1_000)
TIME_LIMIT_S = 110.0
LEASE_S = 30.0


@dataclass(frozen=True)
class Settings:
    rounds: int
    listings: int
    concurrency: int


@dataclass(frozen=True)
class Figures:
    heartbeats_per_s: float
    claims_per_s: float
    list_p50_ms: float
    list_p99_ms: float


def _nodes(count: int) -> list[NodeInfo]:
    return [
        NodeInfo(
            id=NodeId(f"node-{i:04d}"),
            node_group=GROUPS[i % len(GROUPS)],
            public_url=f"http://127.0.0.1:{20000 + i}",
            internal_url=f"http://127.0.0.1:{20000 + i}",
            capacity=NodeCapacity(cores=8, max_players=2000, max_bitrate_kbps=1_000_000),
        )
        for i in range(count)
    ]


async def _bounded(concurrency: int, operations: list[Awaitable[object]]) -> None:
    """Await every operation with at most ``concurrency`` in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def run(operation: Awaitable[object]) -> None:
        async with gate:
            await operation

    await asyncio.gather(*(run(operation) for operation in operations))


async def _measure(url: str, count: int, settings: Settings) -> Figures:
    nodes = _nodes(count)
    # Nodes stay "live" for the whole run: the listing measures the query, not the clock.
    registry = await Registry.connect(
        url, pool_size=settings.concurrency, dead_after_s=TIME_LIMIT_S
    )
    try:
        await _bounded(settings.concurrency, [registry.register(n) for n in nodes])

        load = NodeLoad(cpu=0.3, players=40, pulls=1, bitrate_out_kbps=80_000)
        started = time.perf_counter()
        for _ in range(settings.rounds):
            await _bounded(
                settings.concurrency,
                [registry.heartbeat(n.id, n.node_group, load) for n in nodes],
            )
        heartbeats_per_s = settings.rounds * count / (time.perf_counter() - started)

        started = time.perf_counter()
        for round_ in range(settings.rounds):
            stream = StreamId(f"stream-{round_}")
            await _bounded(
                settings.concurrency,
                [
                    registry.claim_secondary_origin(stream, n.node_group, n.id, LEASE_S)
                    for n in nodes
                ],
            )
        claims_per_s = settings.rounds * count / (time.perf_counter() - started)

        latencies_ms = []
        for _ in range(settings.listings):
            started = time.perf_counter()
            listed = await registry.live_nodes()
            latencies_ms.append((time.perf_counter() - started) * 1000)
            if len(listed) != count:
                raise RuntimeError(f"listed {len(listed)} live nodes, expected {count}")
    finally:
        await registry.close()
    cuts = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return Figures(heartbeats_per_s, claims_per_s, cuts[49], cuts[98])


def _table(results: dict[tuple[str, int], Figures]) -> str:
    rows = [
        ("heartbeats/s", "heartbeats_per_s", "{:,.0f}"),
        ("secondary-origin claims/s", "claims_per_s", "{:,.0f}"),
        ("list live nodes p50 (ms)", "list_p50_ms", "{:.2f}"),
        ("list live nodes p99 (ms)", "list_p99_ms", "{:.2f}"),
    ]
    header = f"{'operation':<27}{'nodes':>7}{'postgresql':>13}{'embedded':>13}{'embedded/pg':>13}"
    lines = [header, "-" * len(header)]
    for label, attribute, shown in rows:
        for count in NODE_COUNTS:
            pg = getattr(results["postgresql", count], attribute)
            embedded = getattr(results["embedded", count], attribute)
            lines.append(
                f"{label:<27}{count:>7,}{shown.format(pg):>13}{shown.format(embedded):>13}"
                f"{embedded / pg:>12.2f}x"
            )
    return "\n".join(lines)


async def _run(settings: Settings) -> str:
    results: dict[tuple[str, int], Figures] = {}
    server = PostgresServer()
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="tierstream-bench-") as scratch:
            for count in NODE_COUNTS:
                urls = {
                    "postgresql": await server.create_database(f"bench_{count}"),
                    "embedded": f"sqlite+aiosqlite:///{Path(scratch) / f'bench_{count}.db'}",
                }
                for backend, url in urls.items():
                    await migrate(url)
                    results[backend, count] = await _measure(url, count, settings)
                    print(f"  measured {backend} with {count:,} nodes", file=sys.stderr)
    finally:
        server.stop()
    return _table(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--concurrency", type=int, default=16, help="operations in flight")
    arguments = parser.parse_args()
    settings = Settings(
        rounds=2 if arguments.quick else 5,
        listings=20 if arguments.quick else 100,
        concurrency=arguments.concurrency,
    )
    started = time.perf_counter()
    table = asyncio.run(asyncio.wait_for(_run(settings), TIME_LIMIT_S))
    print(table)
    print(
        f"\nratio baseline: PostgreSQL, same row, same run; concurrency {settings.concurrency}, "
        f"{settings.rounds} rounds; took {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
