"""``tierstream demo``: a whole multi-region cluster on one machine, a stream, players, a dashboard.

One command shows the product working: real node processes (``demo_nodes``),
a synthetic publisher and counting players (``demo_peers``), progress while
it comes up, then the dashboard URL and a live summary (``demo_summary``).
From another shell ``tierstream demo kill|restart|move`` acts on it
(``demo_control``). Ctrl-C, SIGTERM or the end of ``--duration`` stops every
process it started, by PID, and exits 0; a node that fails to come up ends it
with which node, which port and its last log lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console, RenderableType
from rich.live import Live

from cluster.cli import demo_control
from cluster.cli.demo_nodes import (
    Credentials,
    DemoNode,
    check_ports_free,
    plan_nodes,
    start_nodes,
    stop_nodes,
    write_state,
)
from cluster.cli.demo_peers import DemoPlayer, DemoPublisher
from cluster.cli.demo_summary import observe, render
from cluster.errors import ClusterError
from cluster.registry.migrate import migrate
from cluster.types import NODE_GROUP_PATTERN, parse_stream_id

START_TIMEOUT_S = 45.0
"""Bound on each start-up phase: nodes healthy, stream live, players receiving."""
ORIGIN_REGION = "eu"
"""The publisher's region when the demo has one by that name (else the first region)."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    regions: tuple[str, ...]
    nodes_per_region: int
    players_per_node: int
    port: int
    stream: str
    registry: str | None
    duration_s: float | None
    workdir: Path | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="*",
        metavar="ACTION",
        help="on a running demo: kill NODE | restart NODE | move NODE REGION",
    )
    parser.add_argument("--regions", default="eu,us,ap", help="comma-separated (default eu,us,ap)")
    parser.add_argument("--nodes-per-region", type=int, default=2)
    parser.add_argument("--players-per-node", type=int, default=2)
    parser.add_argument(
        "--port", type=int, default=5080, help="the first node's port; the others follow (5080)"
    )
    parser.add_argument("--stream", default="demo", help="the stream id published (demo)")
    parser.add_argument("--registry", help="postgresql+asyncpg://... instead of the embedded one")
    parser.add_argument(
        "--duration", type=float, help="stop this many seconds after the cluster is up"
    )
    parser.add_argument("--workdir", type=Path, help="keep configs and logs here (default: temp)")


def options_from(args: argparse.Namespace) -> DemoOptions:
    """Validated options; a ValueError names the bad one."""
    regions = tuple(r.strip() for r in args.regions.split(",") if r.strip())
    if not regions or len(set(regions)) != len(regions):
        raise ValueError("--regions must name one or more distinct regions")
    for region in regions:
        if not NODE_GROUP_PATTERN.fullmatch(region):
            raise ValueError(f"--regions: {region!r} must be 1 to 64 of A-Z a-z 0-9 _ -")
    if not 1 <= args.nodes_per_region <= 20:
        raise ValueError("--nodes-per-region must be 1 to 20")
    if not 0 <= args.players_per_node <= 50:
        raise ValueError("--players-per-node must be 0 to 50")
    if not 1024 <= args.port <= 65535 - len(regions) * args.nodes_per_region:
        raise ValueError("--port must leave room for every node's port between 1024 and 65535")
    try:
        parse_stream_id(args.stream)
    except ValueError as error:
        raise ValueError(f"--stream: {error}") from None
    if args.registry is not None and not args.registry.startswith("postgresql+asyncpg://"):
        raise ValueError("--registry must be a postgresql+asyncpg:// URL")
    if args.duration is not None and args.duration <= 0:
        raise ValueError("--duration must be positive")
    return DemoOptions(
        regions,
        args.nodes_per_region,
        args.players_per_node,
        args.port,
        args.stream,
        args.registry,
        args.duration,
        args.workdir,
    )


class Demo:
    """A running demo: its nodes, peers, and the actions another shell may ask of it."""

    def __init__(self, options: DemoOptions, workdir: Path, console: Console) -> None:
        self.options = options
        self.workdir = workdir
        self.console = console
        self.nodes = plan_nodes(options.regions, options.nodes_per_region, options.port, workdir)
        self.credentials = Credentials(secrets.token_urlsafe(24), secrets.token_urlsafe(32))
        self.state_file = workdir / "demo.json"
        origin_region = ORIGIN_REGION if ORIGIN_REGION in options.regions else options.regions[0]
        self.publisher = DemoPublisher(
            options.stream, [n for n in self.nodes if n.region == origin_region]
        )
        self.players = [
            DemoPlayer(options.stream, node)
            for node in self.nodes
            for _ in range(options.players_per_node)
        ]
        self.notes: list[str] = []
        self.http = httpx.AsyncClient(timeout=5.0)

    @property
    def dashboard_url(self) -> str:
        return f"{self.nodes[0].url}/dashboard?stream={self.options.stream}"

    async def start(self) -> None:
        check_ports_free(self.nodes)
        data_dir = self.workdir / "var"
        data_dir.mkdir(parents=True, exist_ok=True)
        registry_url = self.options.registry or f"sqlite+aiosqlite:///{data_dir / 'registry.db'}"
        for node in self.nodes:
            node.write_config(registry_url, data_dir, self.credentials)
        with self.console.status("migrating the registry"):
            await migrate(registry_url)
        with self.console.status(f"starting {len(self.nodes)} nodes"):
            await start_nodes(self.nodes, self.http, START_TIMEOUT_S)
        write_state(self.state_file, self.nodes, self.options.stream)
        self.console.print(
            f"[green]✓[/] nodes healthy ({len(self.nodes)}/{len(self.nodes)}): "
            + ", ".join(f"{n.name}:{n.port}" for n in self.nodes)
        )
        self.publisher.start()
        with self.console.status(f"publishing {self.options.stream}"):
            try:
                async with asyncio.timeout(START_TIMEOUT_S):
                    await self.publisher.publishing.wait()
            except TimeoutError:
                raise ClusterError(
                    f"stream {self.options.stream} did not go live within {START_TIMEOUT_S:.0f} s"
                    f"; see the logs in {self.workdir}"
                ) from None
        origin = self.publisher.node
        self.console.print(
            f"[green]✓[/] stream {self.options.stream} live on {origin.name if origin else '?'}"
        )
        for player in self.players:
            player.start()
        await self._wait_for_players()

    async def _wait_for_players(self) -> None:
        if not self.players:
            return
        deadline = time.monotonic() + START_TIMEOUT_S
        with self.console.status("players joining") as status:
            while time.monotonic() < deadline:
                receiving = sum(1 for p in self.players if p.frames > 0)
                status.update(f"players receiving {receiving}/{len(self.players)}")
                if receiving == len(self.players):
                    self.console.print(
                        f"[green]✓[/] players receiving {receiving}/{len(self.players)} "
                        f"in every region ({', '.join(self.options.regions)})"
                    )
                    return
                await asyncio.sleep(0.25)
        silent = sorted({p.node.name for p in self.players if p.frames == 0})
        self.console.print(f"[yellow]![/] players on {', '.join(silent)} receive nothing yet")

    async def run(self) -> None:
        """The live phase: the summary each second until the duration ends (or a signal)."""
        self.console.print(f"dashboard: [bold underline]{self.dashboard_url}[/]")
        self.console.print(
            f"admin token (region changes on the dashboard): {self.credentials.admin_token}"
        )
        self.console.print(f"configs and logs: {self.workdir}")
        ends_at = time.monotonic() + (self.options.duration_s or float("inf"))
        async with demo_control.serving(self.options.port, self.act):
            if self.console.is_terminal:
                with Live(await self._summary(), console=self.console, auto_refresh=False) as live:
                    while time.monotonic() < ends_at:
                        await asyncio.sleep(1.0)
                        live.update(await self._summary(), refresh=True)
            else:
                printed = 0.0
                while time.monotonic() < ends_at:
                    await asyncio.sleep(min(1.0, max(0.0, ends_at - time.monotonic())))
                    if time.monotonic() - printed >= 5.0:
                        printed = time.monotonic()
                        self.console.print(await self._summary())
        self.console.print(f"--duration {self.options.duration_s:g} s reached")

    async def _summary(self) -> RenderableType:
        picture = await observe(self.http, self.nodes, self.options.stream)
        return render(
            picture, self.nodes, self.players, self.options.stream, self.dashboard_url, self.notes
        )

    async def act(self, action: str, arguments: list[str]) -> str:
        """One action asked from another shell; a ClusterError's message goes back to it."""
        node = self._node(arguments[0])
        if action == "kill":
            if not node.running:
                raise ClusterError(f"{node.name} is not running")
            pid = node.pid
            node.kill()
            message = f"killed {node.name} (SIGKILL to pid {pid})"
        elif action == "restart":
            await node.stop()
            node.launch()
            await node.wait_healthy(self.http, START_TIMEOUT_S)
            message = f"restarted {node.name} (pid {node.pid}) on port {node.port}"
        else:
            message = await self._move(node, arguments[1])
        write_state(self.state_file, self.nodes, self.options.stream)
        self.notes.append(f"{time.strftime('%H:%M:%S')} {message}")
        return message

    async def _move(self, node: DemoNode, region: str) -> str:
        if not NODE_GROUP_PATTERN.fullmatch(region):
            raise ClusterError(f"region {region!r} must be 1 to 64 of A-Z a-z 0-9 _ -")
        try:
            reply = await self.http.post(
                f"{node.url}/rest/changeServerSettings",
                json={"nodeGroup": region},
                headers={"Authorization": f"Bearer {self.credentials.admin_token}"},
            )
        except httpx.TransportError as error:
            raise ClusterError(f"{node.name} cannot be reached: {error}") from None
        if reply.status_code != 200:
            raise ClusterError(f"{node.name} refused: {reply.status_code} {reply.text}")
        node.region = region
        return f"moved {node.name} to region {region}"

    def _node(self, name: str) -> DemoNode:
        for node in self.nodes:
            if node.name == name:
                return node
        names = ", ".join(n.name for n in self.nodes)
        raise ClusterError(f"the demo has no node {name!r}; its nodes are {names}")

    async def close(self) -> None:
        for player in self.players:
            await player.close()
        await self.publisher.close()
        await stop_nodes(self.nodes)
        write_state(self.state_file, self.nodes, self.options.stream)
        await self.http.aclose()


@contextlib.asynccontextmanager
async def _cancelled_by_signals() -> AsyncIterator[None]:
    """SIGINT/SIGTERM cancel the demo's task once; a second signal waits for the clean-up."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopping = False

    def on_signal() -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def run_demo(options: DemoOptions, console: Console) -> None:
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="tierstream-demo-"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    demo = Demo(options, workdir, console)
    try:
        async with _cancelled_by_signals():
            try:
                await demo.start()
                await demo.run()
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                console.print("stopping: every node, the publisher and the players")
    finally:
        await demo.close()
        if options.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    console.print(f"demo stopped: {len(demo.nodes)} node processes ended")


async def act(first_port: int, words: Sequence[str]) -> tuple[bool, str]:
    action, arguments = demo_control.parse_action(list(words))
    return await demo_control.send(first_port, action, arguments)
