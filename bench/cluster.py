"""Relay-tree costs on one machine: ``python bench/cluster.py [--quick]``.

Starts a private PostgreSQL and real node processes on 127.0.0.1 (eu-1 main
origin; us-1, us-2 in another region; ap-1 a region kept cold), one synthetic
publisher on eu-1 and players that never decode. It measures:

- **added latency per relay hop**: each player reads the send time stamped in
  every frame; players at the origin (0 hops), at us-1 (the us secondary
  origin, 1 hop) and at us-2 (an edge below it, 2 hops). Baseline: the player
  at the origin, whose latency is the publisher → node → player path itself.
- **time to first frame**: from the player's first signalling call to its first
  video frame, on a warm edge (us-2 already carries the stream) and in a cold
  region (ap-1 must claim ap's secondary origin and pull across regions first).
  Baseline: the warm edge.
- **failover gap**: the longest pause in video frames a player on an edge sees
  when its secondary origin is SIGKILLed, until it resumes on the same session;
  the same when it is SIGSTOPped (frozen: still listed, sockets accepting,
  nothing answering) for 5 s, and the longest pause in the 4 s after SIGCONT
  (the woken node must learn from the epoch that it lost the role, without a
  second gap). Baseline: the stream's own frame interval (33 ms).
- **republish**: the main origin SIGKILLed, the stream published again on the
  us node holding it for its players; from the new publisher's first frame (a
  keyframe) to the first frame at a player held on another node.

Every node and the database are stopped by PID at the end; the run is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script: the repository root goes on sys.path before our own imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.processes import START_TIMEOUT_S, private_cluster
from cluster.registry import Registry
from cluster.streams.whip_client import SignallingFailed
from cluster.types import StreamId
from tests.support.nodes import NodeProcess
from tests.support.peers import Peers, Playing

TIME_LIMIT_S = 600.0
SETTLE_TIMEOUT_S = 60.0
"""How long a player may take to get its first frames before a measurement (a loaded machine's
publisher can fall to a few frames per second)."""
FRAME_INTERVAL_MS = 1000 / 30
STREAM = StreamId("bench")
IDLE_FAST = {"cluster.idlePullTimeoutMs": "500"}
"""Unwatched pulls stop fast, so a region turns cold again between first-frame rounds."""


def _wall() -> str:
    """Wall-clock time as the nodes' logs print it, to line a fault up with their lines."""
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _longest_pause(playing: Playing, until_resumed: int, timeout_s: float) -> float:
    """Poll the player's frame count every 2 ms; the longest time it stood still, in ms."""
    last_count, last_change, longest = playing.received, time.perf_counter(), 0.0
    deadline = time.perf_counter() + timeout_s
    while playing.received < until_resumed and time.perf_counter() < deadline:
        await asyncio.sleep(0.002)
        if playing.received != last_count:
            now = time.perf_counter()
            longest = max(longest, now - last_change)
            last_count, last_change = playing.received, now
    if playing.received < until_resumed:
        raise TimeoutError(f"the player did not resume within {timeout_s} s")
    return longest * 1000


async def _first_frame_ms(peers: Peers, url: str) -> float:
    started = time.monotonic()
    playing = await peers.play(url)
    await playing.frames(1, timeout_s=15)
    first = playing.player.tracks["video"].first_frame_at
    assert first is not None
    await playing.client.close()
    await playing.player.close()
    return (first - started) * 1000


async def _cold_again(registry: Registry, node: str) -> None:
    """Wait until ``node`` stopped pulling (its idle timeout), so its region is cold again."""
    async with asyncio.timeout(15):
        while True:
            tree = await registry.relay_tree(STREAM)
            if tree is None or all(edge.downstream != node for edge in tree.pulls):
                return
            await asyncio.sleep(0.1)


async def _run(rounds: int, seconds: float, workdir: Path) -> str:
    names = ("eu-1", "us-1", "us-2", "ap-1")
    async with private_cluster(workdir, "bench_cluster", names, **IDLE_FAST) as (url, nodes):
        registry = await Registry.connect(url)
        peers = Peers()
        try:
            return await _measure(nodes, peers, registry, rounds, seconds, workdir, url)
        finally:
            await peers.close()
            await registry.close()


async def _measure(
    nodes: dict[str, NodeProcess],
    peers: Peers,
    registry: Registry,
    rounds: int,
    seconds: float,
    workdir: Path,
    url: str,
) -> str:
    def whep(name: str) -> str:
        return f"{nodes[name].url}/LiveApp/whep/{STREAM}"

    await peers.publish(f"{nodes['eu-1'].url}/LiveApp/whip/{STREAM}")
    hops = {0: await peers.play(whep("eu-1")), 1: await peers.play(whep("us-1"))}
    hops[2] = await peers.play(whep("us-2"))
    for playing in hops.values():
        await playing.frames(30, timeout_s=SETTLE_TIMEOUT_S)
    marks = {hop: len(p.player.tracks["video"].latencies) for hop, p in hops.items()}
    print(f"  measuring latency for {seconds:.0f} s", file=sys.stderr)
    await asyncio.sleep(seconds)
    latency = {
        hop: [v * 1000 for v in p.player.tracks["video"].latencies[marks[hop] :]]
        for hop, p in hops.items()
    }

    warm = [await _first_frame_ms(peers, whep("us-2")) for _ in range(rounds)]
    cold = []
    for _ in range(rounds):
        cold.append(await _first_frame_ms(peers, whep("ap-1")))
        await _cold_again(registry, "ap-1")
    print("  measured time to first frame", file=sys.stderr)

    gaps = []
    secondary, edge = "us-1", "us-2"
    for round_ in range(rounds):
        watching = await peers.play(whep(edge))
        await watching.frames(30, timeout_s=SETTLE_TIMEOUT_S)
        target = watching.received + 30
        print(f"  killing {secondary} at {_wall()}", file=sys.stderr)
        nodes[secondary].kill()
        gaps.append(await _longest_pause(watching, target, timeout_s=15))
        print(f"  failover {round_ + 1}/{rounds}: {gaps[-1]:.0f} ms", file=sys.stderr)
        fresh = f"us-r{round_}"  # a new node joins below the edge, which is now the secondary
        nodes[fresh] = NodeProcess(workdir, fresh, "us", url, **IDLE_FAST).start(START_TIMEOUT_S)
        await (await peers.play(whep(fresh))).frames(10, timeout_s=SETTLE_TIMEOUT_S)
        secondary, edge = edge, fresh

    frozen, woken = [], []
    for round_ in range(rounds):
        watching = await peers.play(whep(edge))
        await watching.frames(30, timeout_s=SETTLE_TIMEOUT_S)
        nodes[secondary].freeze()
        frozen.append(await _longest_pause(watching, watching.received + 30, timeout_s=15))
        await asyncio.sleep(max(0.0, 5 - frozen[-1] / 1000))
        nodes[secondary].thaw()
        woken.append(await _longest_pause(watching, watching.received + 90, timeout_s=15))
        print(
            f"  frozen {round_ + 1}/{rounds}: {frozen[-1]:.0f} ms, after waking {woken[-1]:.0f} ms",
            file=sys.stderr,
        )
        secondary, edge = edge, secondary  # the woken node now pulls from the new secondary

    resumed = await _republish(
        nodes, peers, whep(edge), f"{nodes[secondary].url}/LiveApp/whip/{STREAM}"
    )
    return _table(latency, warm, cold, gaps, frozen, woken, resumed)


async def _republish(
    nodes: dict[str, NodeProcess], peers: Peers, held_player: str, whip_on_holder: str
) -> float:
    """Kill the main origin, publish again on a node holding the stream; the ms from the new
    publisher's first frame to the first frame a held player on another node gets."""
    watching = await peers.play(held_player)
    await watching.frames(30, timeout_s=SETTLE_TIMEOUT_S)
    nodes["eu-1"].kill()
    await asyncio.sleep(0.5)
    deadline = time.monotonic() + 15
    while True:
        before = watching.received
        try:
            published = await peers.publish(whip_on_holder)
            break
        except SignallingFailed as refused:  # the dead origin's lease has not run out yet
            if refused.status != 409 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    for _ in range(7500):  # 15 s at most
        if published.sent:
            break
        await asyncio.sleep(0.002)
    first_sent = time.perf_counter()
    await watching.frames(before + 2, timeout_s=15)
    return (time.perf_counter() - first_sent) * 1000


def _table(
    latency: dict[int, list[float]],
    warm: list[float],
    cold: list[float],
    gaps: list[float],
    frozen: list[float],
    woken: list[float],
    resumed: float,
) -> str:
    direct = statistics.median(latency[0])
    lines = [f"{'measure':<44}{'p50':>10}{'p95/p99/max':>14}{'vs baseline':>14}"]
    names = {
        0: "latency at the main origin (0 hops) ms",
        1: "latency at secondary origin (1 hop) ms",
        2: "latency at edge below it (2 hops) ms",
    }
    for hop, values in latency.items():
        p50 = statistics.median(values)
        lines.append(
            f"{names[hop]:<44}{p50:>10.1f}{percentile(values, 0.99):>14.1f}{p50 / direct:>13.2f}x"
        )
    per_hop = (statistics.median(latency[2]) - direct) / 2
    lines.append(f"{'added latency per relay hop ms':<44}{per_hop:>10.1f}{'':>14}{'':>14}")
    base = statistics.median(warm)
    for name, values in (
        ("first frame, warm edge ms", warm),
        ("first frame, cold region ms", cold),
    ):
        p50 = statistics.median(values)
        lines.append(f"{name:<44}{p50:>10.0f}{percentile(values, 0.95):>14.0f}{p50 / base:>13.2f}x")
    for name, values in (
        ("failover gap, secondary SIGKILLed ms", gaps),
        ("failover gap, secondary SIGSTOPped ms", frozen),
        ("longest pause after it wakes (SIGCONT) ms", woken),
    ):
        p50 = statistics.median(values)
        lines.append(f"{name:<44}{p50:>10.0f}{max(values):>14.0f}{p50 / FRAME_INTERVAL_MS:>13.1f}x")
    lines.append(
        f"{'republished on a holding node: resume ms':<44}{resumed:>10.0f}{'':>14}"
        f"{resumed / FRAME_INTERVAL_MS:>13.1f}x"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--workdir", type=Path, help="keep the nodes' configs and logs here")
    arguments = parser.parse_args()
    rounds, seconds = (2, 5.0) if arguments.quick else (5, 15.0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tierstream-bench-") as scratch:
        workdir = arguments.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        table = asyncio.run(asyncio.wait_for(_run(rounds, seconds, workdir), TIME_LIMIT_S))
    print(table)
    print(
        f"\nbaselines: latency at the main origin; first frame on a warm edge; the 33 ms frame "
        f"interval. {rounds} rounds; took {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
