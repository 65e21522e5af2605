"""Signalling cost, Ant Media WebSocket vs WHEP: ``python bench/signalling.py [--quick]``.

One node process on 127.0.0.1 (embedded registry) carries one synthetic stream
published over WHIP. Workers in this process then play it over and over, each
play a real aiortc player negotiating a new session and leaving at once:

- **WebSocket**: on one socket per worker, ``play`` → our offer → the player's
  answer → ``play_started``; then ``stop`` → ``play_finished``;
- **WHEP** (the baseline): ``POST`` the player's offer → ``201`` with the answer →
  the connection up; then ``DELETE``.

Both run in the same run against the same stream, in alternating rounds so that
drift in the machine's load hits both. It reports plays completed per second
and the p50/p95 time from the first signalling message (``play`` / the ``POST``)
to the play being established (``play_started``, sent once the player's ICE and
DTLS are up / the WHEP player's connection up). The
players' own offer/answer work runs in this process for both, so the ratio is
the node's signalling cost. The node is stopped by its PID; the run is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

# Run as a script: the repository root goes on sys.path before our own imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.streams.whip_client import WhipClient
from media.contrib.client import Player
from tests.support.antmedia import Signalling
from tests.support.nodes import NodeProcess
from tests.support.peers import Peers

TIME_LIMIT_S = 300.0
STREAM = "bench"

Play = Callable[[], Awaitable[float]]


async def _websocket_worker(node: NodeProcess) -> tuple[Play, Signalling]:
    socket = await Signalling.open(node.url)

    async def play() -> float:
        started = time.perf_counter()
        await socket.send("play", streamId=STREAM, token="", room="", trackList=[])
        offer = await socket.expect("takeConfiguration")
        player = Player()
        try:
            answer = await player.answer(offer["sdp"])
            await socket.send("takeConfiguration", streamId=STREAM, type="answer", sdp=answer)
            await socket.expect("notification", "play_started")
            elapsed = time.perf_counter() - started
            await socket.send("stop", streamId=STREAM)
            await socket.expect("notification", "play_finished")
        finally:
            await player.close()
        return elapsed

    return play, socket


async def _connected(player: Player) -> None:
    """Wait (bounded) until the player's connection is up: what ``play_started`` waits for."""
    async with asyncio.timeout(10):
        while player.pc.connectionState != "connected":
            changed = asyncio.Event()
            player.pc.once("connectionstatechange", changed.set)
            await changed.wait()


def _whep_play(node: NodeProcess) -> Play:
    async def play() -> float:
        player = Player()
        client = WhipClient(f"{node.url}/LiveApp/whep/{STREAM}")
        started = time.perf_counter()
        try:
            await player.play(client.exchange)
            await _connected(player)
            return time.perf_counter() - started
        finally:
            await client.close()
            await player.close()

    return play


async def _round(plays: list[Play], seconds: float) -> tuple[int, list[float]]:
    """Every worker plays back to back for ``seconds``; (plays completed, their times)."""
    times: list[float] = []
    deadline = time.perf_counter() + seconds

    async def work(play: Play) -> None:
        while time.perf_counter() < deadline:
            times.append(await play())

    await asyncio.gather(*(work(play) for play in plays))
    return len(times), times


async def _run(workers: int, rounds: int, seconds: float, workdir: Path) -> str:
    node = NodeProcess(workdir, "bench-1", "eu", f"sqlite+aiosqlite:///{workdir / 'registry.db'}")
    node.start()
    peers = Peers()
    sockets: list[Signalling] = []
    try:
        await peers.publish(f"{node.url}/LiveApp/whip/{STREAM}")
        ws_plays: list[Play] = []
        for _ in range(workers):
            play, socket = await _websocket_worker(node)
            ws_plays.append(play)
            sockets.append(socket)
        whep_plays = [_whep_play(node) for _ in range(workers)]
        results: dict[str, tuple[int, list[float]]] = {"WebSocket": (0, []), "WHEP": (0, [])}
        for round_ in range(rounds):
            for name, plays in (("WebSocket", ws_plays), ("WHEP", whep_plays)):
                count, times = await _round(plays, seconds)
                total, kept = results[name]
                results[name] = (total + count, kept + times)
                print(f"  round {round_ + 1}/{rounds} {name}: {count / seconds:.1f} plays/s",
                      file=sys.stderr)  # fmt: skip
    finally:
        for socket in sockets:
            await socket.close()
        await peers.close()
        node.stop()
    return _table(results, rounds * seconds)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _table(results: dict[str, tuple[int, list[float]]], seconds: float) -> str:
    base_rate = results["WHEP"][0] / seconds
    base_p50 = statistics.median(results["WHEP"][1])
    lines = [f"{'signalling':<12}{'plays/s':>10}{'vs WHEP':>10}{'p50 ms':>10}{'p95 ms':>10}"
             f"{'p50 vs WHEP':>13}"]  # fmt: skip
    for name, (count, times) in results.items():
        rate, p50, p95 = count / seconds, statistics.median(times), percentile(times, 0.95)
        lines.append(f"{name:<12}{rate:>10.1f}{rate / base_rate:>9.2f}x{p50 * 1000:>10.0f}"
                     f"{p95 * 1000:>10.0f}{p50 / base_p50:>12.2f}x")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds (a smoke run)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent players (default 4)")
    arguments = parser.parse_args()
    rounds, seconds = (1, 4.0) if arguments.quick else (3, 10.0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tierstream-bench-") as scratch:
        table = asyncio.run(
            asyncio.wait_for(_run(arguments.workers, rounds, seconds, Path(scratch)), TIME_LIMIT_S)
        )
    print(table)
    print(
        f"\nbaseline: WHEP on the same node and stream. {arguments.workers} workers, {rounds} "
        f"rounds of {seconds:.0f} s each; took {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
