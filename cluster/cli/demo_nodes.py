"""The demo's node processes: real ``tierstream node`` processes, started and stopped by PID.

Each node gets its own directory under the demo's workdir with a generated
properties file and its log. Processes run in their own session so a Ctrl-C
in the terminal reaches the demo only, and the demo stops them in order
(SIGTERM, a bounded wait, then SIGKILL). A port already taken is named before
anything starts, and a node that exits or never turns healthy is reported
with its name, its port and the last lines of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cluster.errors import ClusterError

HEARTBEAT_MS = 500
"""Heartbeats twice a second, so a change shows on the dashboard within half a second."""
DEAD_AFTER_MS = 2000
STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 15


class NodeFailed(ClusterError):
    """A demo node did not come up: says which, on which port, and what its log last said."""

    def __init__(self, node: DemoNode, reason: str) -> None:
        tail = "\n".join(f"  | {line}" for line in node.log_tail())
        super().__init__(
            f"node {node.name} (port {node.port}) {reason}; last lines of {node.log}:\n{tail}"
        )


class PortInUse(ClusterError):
    def __init__(self, port: int, name: str) -> None:
        super().__init__(
            f"port {port} (for node {name}) is already in use on 127.0.0.1; "
            "stop what listens there or choose another first port with --port"
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """The demo cluster's secrets, made fresh for each run."""

    admin_token: str
    cluster_secret: str


@dataclass
class DemoNode:
    """One node of the demo: where its files are, and its process while it runs."""

    name: str
    region: str
    port: int
    root: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.root / "conf" / "red5.properties"

    @property
    def log(self) -> Path:
        return self.root / "node.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def write_config(self, registry_url: str, data_dir: Path, credentials: Credentials) -> None:
        lines = {
            "nodeGroup": self.region,
            "server.name": self.name,
            "http.host": "127.0.0.1",
            "http.port": str(self.port),
            "server.adminToken": credentials.admin_token,
            "server.allowed_dashboard_CIDR": "127.0.0.0/8,::1/128",
            "cluster.secret": credentials.cluster_secret,
            "server.dataDir": str(data_dir),
            "clusterdb.url": registry_url,
            "webrtc.candidateAddresses": "127.0.0.1",
            "webrtc.iceServers": "",
            "cluster.heartbeatIntervalMs": str(HEARTBEAT_MS),
            "cluster.nodeDeadTimeoutMs": str(DEAD_AFTER_MS),
            # The demo puts its publisher and players on chosen nodes to show the relay tree;
            # routing would move them (every client is 127.0.0.1, so load alone decides).
            "server.routing": "off",
        }
        self.config.parent.mkdir(parents=True, exist_ok=True)
        text = f"# demo node {self.name}, written by tierstream demo\n"
        self.config.write_text(text + "".join(f"{k}={v}\n" for k, v in lines.items()), "utf-8")

    def launch(self) -> None:
        """Start the node process (not waiting for it); a running one is left alone."""
        if self.running:
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTREAM_")}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cluster", "node", "--config", str(self.config)],
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_healthy(self, http: httpx.AsyncClient, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = self.process.returncode if self.process is not None else None
                raise NodeFailed(self, f"exited with status {code} while starting")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{self.url}/healthz", timeout=1.0)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
        raise NodeFailed(self, f"was not healthy within {timeout_s:.0f} s")

    def kill(self) -> None:
        """SIGKILL by PID: a crash, as the cluster sees it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)

    async def stop(self) -> None:
        """SIGTERM by PID (the node drains and leaves the registry), SIGKILL after the grace."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait, 5)

    def log_tail(self) -> list[str]:
        if not self.log.exists():
            return ["(no log written)"]
        lines = self.log.read_text("utf-8", errors="replace").splitlines()
        return lines[-LOG_TAIL_LINES:] or ["(the log is empty)"]


def plan_nodes(
    regions: Sequence[str], per_region: int, first_port: int, workdir: Path
) -> list[DemoNode]:
    """``<region>-<n>`` on consecutive ports from ``first_port``, region by region."""
    nodes: list[DemoNode] = []
    for region in regions:
        for n in range(1, per_region + 1):
            name = f"{region}-{n}"
            nodes.append(DemoNode(name, region, first_port + len(nodes), workdir / name))
    return nodes


def check_ports_free(nodes: Iterable[DemoNode]) -> None:
    """Name the first port something else listens on, before any node starts."""
    for node in nodes:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", node.port))
            except OSError:
                raise PortInUse(node.port, node.name) from None


async def start_nodes(nodes: Sequence[DemoNode], http: httpx.AsyncClient, timeout_s: float) -> None:
    """Launch every node at once (start-up costs overlap), then wait for each to be healthy."""
    for node in nodes:
        node.launch()
    await asyncio.gather(*(node.wait_healthy(http, timeout_s) for node in nodes))


async def stop_nodes(nodes: Sequence[DemoNode]) -> None:
    await asyncio.gather(*(node.stop() for node in nodes))


def write_state(path: Path, nodes: Sequence[DemoNode], stream: str) -> None:
    """The running demo as JSON (nodes, ports, PIDs), for scripts and tests; replaced atomically."""
    state = {
        "stream": stream,
        "nodes": [
            {
                "name": n.name,
                "region": n.region,
                "port": n.port,
                "url": n.url,
                "pid": n.pid,
                "config": str(n.config),
                "log": str(n.log),
            }
            for n in nodes
        ],
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n", "utf-8")
    temporary.replace(path)
