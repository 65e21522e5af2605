"""What the live dashboard costs a node: ``python bench/dashboard.py [--quick]``.

Two real node processes on an embedded registry (eu-1 measured, us-1 the node
whose changes are watched), heartbeats every 500 ms, one synthetic publisher
on eu-1 with players there that never decode, and ``--streams`` more live
streams held in the registry by a stand-in origin (so each snapshot, diff and
message is as large as on a busy cluster). It measures, in one run:

- **CPU per event-stream subscriber per second**: eu-1's process CPU over a
  window with 0, 10 and 50 open feeds (``GET /dashboard/events``, read as
  fast as they come); the cost above the 0-feed baseline, per feed per second.
- **registry change → page update**: us-1 changes region (the admin REST);
  the time until a feed from eu-1 carries us-1 in its new region, p50/p95.
  It cannot beat one heartbeat of each node (the change is written at us-1's
  next beat, read at eu-1's), so the heartbeat interval is the baseline.
- **media plane at 10 dashboards vs none**: the players' frame rate and
  latency (stamped in each frame) and eu-1's CPU, with 10 feeds open against
  none, as ratios.

Every node is stopped by PID at the end; the run is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil

# Run as a script: the repository root goes on sys.path before our own imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.registry import Registry
from cluster.registry.migrate import migrate
from cluster.types import AppName, NodeGroup, NodeId, NodeLoad, StreamId
from tests.support.factories import node_info
from tests.support.nodes import ADMIN_TOKEN, NodeProcess, start_all
from tests.support.peers import Peers, Playing

TIME_LIMIT_S = 300.0
HEARTBEAT_MS = 500
STANDIN = NodeId("standin-1")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


class Feeds:
    """Open dashboard feeds on one node, read as fast as they come by a separate process.

    Another process, so that parsing the feeds takes no CPU from this one's
    players; stopped by its PID.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._process: asyncio.subprocess.Process | None = None

    async def open(self, count: int) -> None:
        await self.close()
        if count == 0:
            return
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--read-feeds", self._url, str(count),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), 30)
        if line.strip() != b"open":
            raise RuntimeError(f"the feed reader failed: {line!r}")

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 10)


async def _read_feeds(url: str, count: int) -> None:
    """The reader process: ``count`` feeds, each line read, until terminated."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=count)) as http:
        opened = [asyncio.Event() for _ in range(count)]

        async def read(event: asyncio.Event) -> None:
            async with http.stream("GET", f"{url}/dashboard/events?stream=bench") as reply:
                if reply.status_code != 200:
                    raise SystemExit(f"feed refused: {reply.status_code}")
                event.set()
                async for _ in reply.aiter_lines():
                    pass

        tasks = [asyncio.create_task(read(event)) for event in opened]
        for event in opened:
            await event.wait()
        print("open", flush=True)
        await asyncio.gather(*tasks)


async def _cpu_s(process: psutil.Process, seconds: float) -> float:
    """CPU seconds the process used over a window of ``seconds``."""
    before = process.cpu_times()
    await asyncio.sleep(seconds)
    after = process.cpu_times()
    return (after.user - before.user) + (after.system - before.system)


async def _media(
    players: list[Playing], process: psutil.Process, seconds: float
) -> dict[str, float]:
    frames = [p.received for p in players]
    marks = [len(p.player.tracks["video"].latencies) for p in players]
    cpu = await _cpu_s(process, seconds)
    fps = statistics.mean((p.received - f) / seconds for p, f in zip(players, frames, strict=True))
    latencies = [
        v * 1000
        for p, m in zip(players, marks, strict=True)
        for v in p.player.tracks["video"].latencies[m:]
    ]
    return {"fps": fps, "latency": statistics.median(latencies), "cpu": cpu / seconds}


async def _joined(peers: Peers, url: str) -> Playing:
    """A player, once the publisher (another process, starting up) has made the stream live."""
    async with asyncio.timeout(30):
        while True:
            try:
                return await peers.play(url)
            except Exception:  # 404 until the publisher's offer is in
                await asyncio.sleep(0.5)


async def _changes(http: httpx.AsyncClient, eu: str, us: str, rounds: int) -> list[float]:
    """Seconds from us-1's region change (REST answered) to a feed from eu-1 showing it."""
    delays: list[float] = []
    async with http.stream("GET", f"{eu}/dashboard/events") as feed:
        lines = feed.aiter_lines()
        for round_ in range(rounds):
            region = "ap" if round_ % 2 == 0 else "us"
            reply = await http.post(
                f"{us}/rest/changeServerSettings",
                json={"nodeGroup": region},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            reply.raise_for_status()
            changed_at = time.perf_counter()
            async with asyncio.timeout(10):
                while True:
                    line = await anext(lines)
                    if not line.startswith("data: "):
                        continue
                    nodes = json.loads(line[6:])["nodes"]
                    if any(n["id"] == "us-1" and n["nodeGroup"] == region for n in nodes):
                        break
            delays.append(time.perf_counter() - changed_at)
            await asyncio.sleep(0.2)
    return delays


@contextlib.asynccontextmanager
async def _standin_streams(url: str, count: int) -> AsyncIterator[None]:
    """``count`` live streams whose main origin (a stand-in node) keeps heartbeating."""
    registry = await Registry.connect(url)
    info = node_info(STANDIN, "eu")
    await registry.register(info)
    ids = [StreamId(f"standin-{n}") for n in range(count)]

    async def renew() -> None:
        for beat in itertools.count():
            await registry.heartbeat(STANDIN, NodeGroup("eu"), NodeLoad())
            if beat % 10 == 0:  # leases of 15 s renewed every 5 s
                for stream_id in ids:
                    await registry.claim_stream(
                        stream_id, AppName("LiveApp"), STANDIN, NodeGroup("eu"), ("VP8",), 15.0
                    )
            await asyncio.sleep(HEARTBEAT_MS / 1000)

    task = asyncio.create_task(renew())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await registry.deregister(STANDIN)
        await registry.close()


async def _run(quick: bool, streams: int, players_count: int, workdir: Path) -> str:
    window = 4.0 if quick else 8.0
    repeats = 1 if quick else 3
    rounds = 10 if quick else 40
    url = f"sqlite+aiosqlite:///{workdir / 'registry.db'}"
    await migrate(url)
    timing = {"cluster.heartbeatIntervalMs": str(HEARTBEAT_MS)}
    nodes = [NodeProcess(workdir, name, name[:2], url, **timing) for name in ("eu-1", "us-1")]
    try:
        start_all(nodes)
        eu, us = nodes[0].url, nodes[1].url
        assert nodes[0].process is not None
        process = psutil.Process(nodes[0].process.pid)
        peers = Peers()
        async with _standin_streams(url, streams), httpx.AsyncClient(timeout=30) as http:
            publisher = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cluster", "publish", "--whip", f"{eu}/LiveApp/whip/bench",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            feeds = Feeds(eu)
            try:
                players = [await _joined(peers, f"{eu}/LiveApp/whep/bench")
                           for _ in range(players_count)]  # fmt: skip
                for playing in players:
                    await playing.frames(30, timeout_s=30)
                print("  cluster up; measuring", file=sys.stderr)
                cpu: dict[int, list[float]] = {0: [], 10: [], 50: []}
                media: dict[int, list[dict[str, float]]] = {0: [], 10: []}
                for round_ in range(repeats):  # interleaved, so drifting load hits both alike
                    for count in (0, 10, 50):
                        await feeds.open(count)
                        await asyncio.sleep(1.0)
                        if count == 50:
                            cpu[50].append(await _cpu_s(process, window) / window)
                        else:
                            media[count].append(await _media(players, process, window))
                            cpu[count].append(media[count][-1]["cpu"])
                    print(f"  round {round_ + 1}/{repeats} measured", file=sys.stderr)
                await feeds.close()
                delays = await _changes(http, eu, us, rounds)
            finally:
                await feeds.close()
                await peers.close()
                publisher.send_signal(signal.SIGTERM)
                await asyncio.wait_for(publisher.wait(), 10)
    finally:
        for node in nodes:
            node.stop()
    medians = {count: statistics.median(values) for count, values in cpu.items()}
    none, ten = ({key: statistics.median(m[key] for m in media[count]) for key in media[0][0]}
                 for count in (0, 10))  # fmt: skip
    return _table(medians, delays, none, ten, streams, players_count)


def _table(
    cpu: dict[int, float],
    delays: list[float],
    none: dict[str, float],
    ten: dict[str, float],
    streams: int,
    players: int,
) -> str:
    lines = [f"eu-1 with {streams + 1} live streams, {players} players on it, heartbeat "
             f"{HEARTBEAT_MS} ms", "",
             f"{'measure':<52}{'value':>12}{'vs baseline':>14}"]  # fmt: skip
    for count in (10, 50):
        per = (cpu[count] - cpu[0]) / count * 1e6
        lines.append(f"{f'CPU per feed per second, {count} feeds (us)':<52}{per:>12.0f}"
                     f"{cpu[count] / cpu[0]:>13.2f}x")  # fmt: skip
    beat = HEARTBEAT_MS / 1000
    for name, value in (("p50", statistics.median(delays)), ("p95", percentile(delays, 0.95))):
        lines.append(f"{f'registry change -> page update {name} (ms)':<52}{value * 1000:>12.0f}"
                     f"{value / beat:>13.2f}x")  # fmt: skip
    for key, name in (("fps", "player frame rate"), ("latency", "player latency p50 (ms)"),
                      ("cpu", "eu-1 CPU (cores)")):  # fmt: skip
        lines.append(f"{f'{name}, 10 dashboards vs none':<52}{ten[key]:>12.2f}"
                     f"{ten[key] / none[key]:>13.2f}x")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows (a smoke run)")
    parser.add_argument("--streams", type=int, default=100, help="stand-in live streams")
    parser.add_argument("--players", type=int, default=10, help="players on eu-1")
    parser.add_argument("--workdir", type=Path, help="keep the nodes' configs and logs here")
    parser.add_argument("--read-feeds", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.read_feeds:
        asyncio.run(_read_feeds(arguments.read_feeds[0], int(arguments.read_feeds[1])))
        return
    started = time.perf_counter()

    async def bounded() -> str:
        async with asyncio.timeout(TIME_LIMIT_S):
            if arguments.workdir:
                arguments.workdir.mkdir(parents=True, exist_ok=True)
                return await _run(arguments.quick, arguments.streams, arguments.players,
                                  arguments.workdir)  # fmt: skip
            with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as workdir:
                return await _run(arguments.quick, arguments.streams, arguments.players,
                                  Path(workdir))  # fmt: skip

    print(asyncio.run(bounded()))
    print(f"\n(took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
