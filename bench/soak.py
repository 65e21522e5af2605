"""A bounded churn run: ``python bench/soak.py [--quick] [--minutes M] [--workdir DIR]``.

Real node processes on a private PostgreSQL (eu-1 the main origin, eu-2, us-1,
us-2), a synthetic publisher in a process of its own on eu-1 (160x96 at 15 fps,
so this process can hold many players), and players here that never decode,
video only. For the whole run:

- **players join and leave**: ``PLAYERS`` slots; each plays at a random live node
  for 5-20 s, leaves (DELETE), and the next one joins; a player whose session
  ends (its node killed, its stream ended) is replaced at once;
- **the publisher restarts**: every ``publisher_every_s`` it leaves (Ctrl-C: DELETE,
  the stream ends) and publishes the same id again;
- **a node is killed and restarted**: every ``kill_every_s`` one of eu-2, us-1,
  us-2 in turn (never the main origin's node) is SIGKILLed and started again at
  once under the same name.

It reports, per node, resident memory and open fds (``psutil``, every 5 s) and
their growth per hour: the least-squares slope over the run after the first
window, *extrapolated* from a run of minutes (for a killed node, over its
longest life); failed plays (no answer, or no first frame within 15 s, at a
node that was up when asked); rows left in the registry once everything has
stopped and settled (pulls, secondary-origin claims, streams not ended,
players, reservations); and the longest pause in video any player saw while
its session lived. Baselines, from the same run: the stream's frame interval
for pauses, each node's first window for memory and fds.

Every process is stopped by its PID at the end; the run is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

# Run as a script: the repository root goes on sys.path before our own imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.processes import START_TIMEOUT_S, private_cluster
from tests.support.cluster import Pauses, while_refused
from tests.support.nodes import NodeProcess
from tests.support.peers import Peers, Playing, PublisherProcess
from tests.support.registry import connected

STREAM = "soak"
FPS = 15
FRAME_INTERVAL_MS = 1000 / FPS
PICTURE = ("--size", "160x96", "--fps", str(FPS), "--keyframe-interval", "1")
NAMES = ("eu-1", "eu-2", "us-1", "us-2")
KILLED = ("eu-2", "us-1", "us-2")
PLAYERS = 10
FIRST_FRAME_S = 15.0
SAMPLE_S = 5.0
SETTLE_S = 20.0
STALL_S = 5.0
REPUBLISH_S = 30.0
KEYS = {"cluster.idlePullTimeoutMs": "2000", "server.log_level": "WARN"}
"""Idle pulls stop fast, so the settled registry shows what was left, not what lingers."""


@dataclass
class Life:
    """One run of a node process: (seconds since the start, RSS bytes, open fds) samples."""

    pid: int
    samples: list[tuple[float, int, int]] = field(default_factory=list)


@dataclass
class Soak:
    nodes: dict[str, NodeProcess]
    started: float = field(default_factory=time.monotonic)
    lives: dict[str, list[Life]] = field(default_factory=dict)
    plays: int = 0
    failed: list[str] = field(default_factory=list)
    pauses: list[float] = field(default_factory=list)
    """The longest pause of each player session, in seconds."""
    down: set[str] = field(default_factory=set)
    kills: int = 0
    kills_of: dict[str, int] = field(default_factory=dict)
    stalled: int = 0
    """Sessions left after ``STALL_S`` without a frame (their stream ended, mostly)."""
    publishes: int = 0
    live: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while a publisher is on: players do not ask for a stream between publishers."""

    def up(self) -> list[str]:
        return [name for name in self.nodes if name not in self.down]


async def _sample(soak: Soak) -> None:
    """RSS and open fds of every running node process, every ``SAMPLE_S``."""
    while True:
        for name, node in soak.nodes.items():
            if node.process is None or name in soak.down:
                continue
            lives = soak.lives.setdefault(name, [])
            if not lives or lives[-1].pid != node.process.pid:
                lives.append(Life(node.process.pid))
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(node.process.pid)
                at = time.monotonic() - soak.started
                lives[-1].samples.append((at, process.memory_info().rss, process.num_fds()))
        await asyncio.sleep(SAMPLE_S)


async def _player(soak: Soak, peers: Peers, rng: random.Random, until: float) -> None:
    """One slot: play at a random live node for 5-20 s, leave, again, until ``until``."""
    while time.monotonic() < until:
        await soak.live.wait()
        name = rng.choice(soak.up())
        url = f"{soak.nodes[name].url}/LiveApp/whep/{STREAM}"
        soak.plays += 1
        try:
            playing = await peers.play(url, kinds=("video",))
            await playing.frames(1, timeout_s=FIRST_FRAME_S)
        except Exception as error:  # every way a play fails is counted
            # A node killed or a publisher restarting meanwhile is the churn, not a failure.
            if name not in soak.down and soak.live.is_set():
                soak.failed.append(f"{name}: {type(error).__name__}: {error}"[:200])
            await asyncio.sleep(1.0)
            continue
        await _watch(soak, name, playing, min(until, time.monotonic() + rng.uniform(5, 20)))


async def _watch(soak: Soak, name: str, playing: Playing, leave_at: float) -> None:
    """Until the player leaves, or its session ends: closed, its node killed, or no frame
    for ``STALL_S`` (its stream ended with the publisher's restart)."""
    pauses = Pauses(playing)
    kills = soak.kills_of.get(name, 0)
    frames, moved_at = playing.received, time.monotonic()
    try:
        while time.monotonic() < leave_at:
            await asyncio.sleep(0.5)
            if playing.received != frames:
                frames, moved_at = playing.received, time.monotonic()
            if playing.player.ended.is_set() or soak.kills_of.get(name, 0) != kills:
                break
            if time.monotonic() - moved_at > STALL_S:
                soak.stalled += 1
                break
    finally:
        await pauses.close()
        soak.pauses.append(pauses.longest())
        await playing.client.close()
        await playing.player.close()


async def _kill_nodes(soak: Soak, every_s: float, until: float) -> None:
    for name in itertools.cycle(KILLED):
        await asyncio.sleep(every_s)
        if time.monotonic() >= until:
            return
        node = soak.nodes[name]
        soak.down.add(name)
        node.kill()
        soak.kills += 1
        soak.kills_of[name] = soak.kills_of.get(name, 0) + 1
        print(f"  {time.monotonic() - soak.started:5.0f} s: killed {name}", file=sys.stderr)
        await asyncio.to_thread(node.start, START_TIMEOUT_S)
        soak.down.discard(name)


async def _republish(soak: Soak, workdir: Path, every_s: float, until: float) -> None:
    whip = f"{soak.nodes['eu-1'].url}/LiveApp/whip/{STREAM}"
    while True:
        publisher = await _publish_again(soak, whip, workdir)
        soak.publishes += 1
        soak.live.set()
        try:
            await asyncio.sleep(max(0.0, min(every_s, until - time.monotonic())))
        finally:
            soak.live.clear()
            await asyncio.to_thread(publisher.stop)
        if time.monotonic() >= until:
            return
        print(f"  {time.monotonic() - soak.started:5.0f} s: publisher restarts", file=sys.stderr)


async def _publish_again(soak: Soak, whip: str, workdir: Path) -> PublisherProcess:
    """Start the next publisher; like a real one, it tries again while the node still
    refuses it (409: the previous publisher's session not yet gone), for ``REPUBLISH_S``."""
    attempts = itertools.count()

    async def attempt() -> PublisherProcess:
        n = next(attempts)
        if n:
            at = time.monotonic() - soak.started
            print(f"  {at:5.0f} s: publishing refused (409), again", file=sys.stderr)
        log = workdir / f"publisher-{soak.publishes}-{n}.log"
        return await asyncio.to_thread(PublisherProcess(whip, log, PICTURE).start, 60.0)

    return await while_refused(
        attempt, lambda exc: isinstance(exc, RuntimeError) and "409" in str(exc), REPUBLISH_S, 1.0
    )


@contextlib.asynccontextmanager
async def _tasks(*coroutines: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run ``coroutines`` as tasks for the block; cancel and await them after it."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _churn(soak: Soak, workdir: Path, seconds: float, kill_every_s: float) -> None:
    until = soak.started + seconds
    peers = Peers()
    rng = random.Random(7)
    try:
        async with _tasks(_sample(soak)):
            publishing = asyncio.create_task(_republish(soak, workdir, kill_every_s * 1.5, until))
            try:
                await soak.live.wait()
                await asyncio.sleep(3.0)  # every node's view has the stream
                players = asyncio.gather(
                    *(_player(soak, peers, rng, until) for _ in range(PLAYERS))
                )
                async with _tasks(_kill_nodes(soak, kill_every_s, until)):
                    # A publisher that cannot publish again ends the run, saying why,
                    # rather than leave the players waiting for a stream that never comes.
                    running: list[asyncio.Future[Any]] = [players, publishing]
                    await asyncio.wait(running, return_when=asyncio.FIRST_EXCEPTION)
                    if publishing.done() and publishing.exception() is not None:
                        players.cancel()
                        await asyncio.gather(players, return_exceptions=True)
                    await publishing
                    await players
            finally:
                publishing.cancel()
                await asyncio.gather(publishing, return_exceptions=True)
    finally:
        await peers.close()


async def _left_behind(url: str) -> dict[str, int]:
    """What the registry still holds once every client is gone and the nodes settled."""
    async with connected(url) as registry:
        await asyncio.sleep(SETTLE_S)
        snapshot = await registry.snapshot()
    return {
        "pull rows": len(snapshot.pulls),
        "secondary-origin claims": len(snapshot.secondary_origins),
        "streams not ended": len(snapshot.streams),
        "players counted": sum(n.load.players for n in snapshot.nodes),
        "reservations": sum(n.reserved for n in snapshot.nodes),
        "nodes listed (of 4)": len(snapshot.nodes),
    }


def _slope_per_hour(samples: list[tuple[float, int, int]], column: int) -> float:
    xs = [s[0] for s in samples]
    ys = [float(s[column]) for s in samples]
    return statistics.linear_regression(xs, ys).slope * 3600 if len(set(xs)) > 1 else 0.0


def _growth_rows(soak: Soak) -> list[str]:
    rows = []
    for name in NAMES:
        life = max(soak.lives.get(name, []), key=lambda lf: len(lf.samples), default=None)
        if life is None or len(life.samples) < 4:
            rows.append(f"{name}: too few samples")
            continue
        window = max(2, len(life.samples) // 5)  # the first fifth is the baseline window
        later = life.samples[window:]
        first_rss = statistics.mean(s[1] for s in life.samples[:window]) / 2**20
        last_rss = statistics.mean(s[1] for s in later[-window:]) / 2**20
        first_fds = statistics.mean(s[2] for s in life.samples[:window])
        last_fds = statistics.mean(s[2] for s in later[-window:])
        span = (later[-1][0] - life.samples[0][0]) / 60
        rows.append(
            f"{name + ' RSS MB (' + f'{span:.0f}' + ' min life)':<44}"
            f"{first_rss:>9.1f}{last_rss:>9.1f}{_slope_per_hour(later, 1) / 2**20:>+12.1f}"
            f"{last_rss / first_rss:>10.2f}x"
        )
        rows.append(
            f"{name + ' open fds':<44}{first_fds:>9.0f}{last_fds:>9.0f}"
            f"{_slope_per_hour(later, 2):>+12.1f}{last_fds / first_fds:>10.2f}x"
        )
    return rows


def _table(soak: Soak, left: dict[str, int]) -> str:
    longest = max(soak.pauses, default=0.0) * 1000
    typical = statistics.median(soak.pauses) * 1000 if soak.pauses else 0.0
    rows = sum(left.values()) - left["nodes listed (of 4)"]
    lines = [
        f"{'measure':<44}{'value':>12}{'baseline':>18}{'ratio':>10}",
        f"{'longest pause any player saw, ms':<44}{longest:>12.0f}"
        f"{'frame 66.7 ms':>18}{longest / FRAME_INTERVAL_MS:>9.1f}x",
        f"{'median of each session longest pause, ms':<44}{typical:>12.0f}"
        f"{'frame 66.7 ms':>18}{typical / FRAME_INTERVAL_MS:>9.1f}x",
        f"{'failed plays':<44}{len(soak.failed):>12}{f'of {soak.plays}':>18}"
        f"{len(soak.failed) / max(1, soak.plays):>9.1%} ",
        f"{'rows left after settling (all kinds)':<44}{rows:>12}",
    ]
    lines += [f"  {kind:<42}{count:>12}" for kind, count in left.items()]
    lines += [
        "",
        f"{'per node (growth extrapolated to an hour)':<44}{'first':>9}{'last':>9}"
        f"{'per hour':>12}{'last/first':>11}",
        *_growth_rows(soak),
    ]
    return "\n".join(lines)


async def _run(seconds: float, kill_every_s: float, workdir: Path) -> str:
    async with private_cluster(workdir, "bench_soak", NAMES, **KEYS) as (url, nodes):
        soak = Soak(nodes)
        await _churn(soak, workdir, seconds, kill_every_s)
        left = await _left_behind(url)
        for reason in soak.failed[:10]:
            print(f"  failed play: {reason}", file=sys.stderr)
        summary = (
            f"\n{seconds / 60:.1f} min: {soak.plays} plays, {len(soak.pauses)} sessions, "
            f"{soak.kills} node kills, {soak.publishes} publishes, {soak.stalled} sessions "
            f"left after {STALL_S:.0f} s without a frame"
        )
        return _table(soak, left) + summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 s, a kill every 25 s")
    parser.add_argument("--minutes", type=float, default=6.0, help="run length (default 6)")
    parser.add_argument("--workdir", type=Path, help="keep the nodes' configs and logs here")
    arguments = parser.parse_args()
    seconds, kill_every_s = (100.0, 25.0) if arguments.quick else (arguments.minutes * 60, 60.0)
    with tempfile.TemporaryDirectory(prefix="tierstream-soak-") as scratch:
        workdir = arguments.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        bound = seconds + 300  # start-up, restarts and settling on a loaded machine
        print(asyncio.run(asyncio.wait_for(_run(seconds, kill_every_s, workdir), bound)))
    print(
        "\nbaselines: the stream's 66.7 ms frame interval (15 fps); each node's first fifth of "
        "its samples. Growth per hour is extrapolated from this run's slope."
    )


if __name__ == "__main__":
    main()
