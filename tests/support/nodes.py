"""Real node processes for integration tests: each its own config file, port and log.

A node is started as ``python -m cluster node --config <file>`` on 127.0.0.1 and
stopped by its PID: SIGTERM and a bounded wait, SIGKILL after that. Every wait
here is bounded. A node given ``server.tlsCertificate`` serves HTTPS: its ``url``
says so, and ``verify`` is what a test client checks it with (its
``server.tlsCA``).

``on_host(host)`` (``tests.support.netns``) runs the node inside that host's
network namespace instead, listening and advertising ICE candidates on the
host's address; the test's own requests to it (``get``, ``post``, the health
check) are then made from that host.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.support import REPO
from tests.support.netns import Host
from tests.support.postgres import free_port

T = TypeVar("T")

ADMIN_TOKEN = "test-admin-token"
CLUSTER_SECRET = "test-cluster-secret-0123456789abcdef"


class NodeProcess:
    """One ``tierstream node`` process and the files it owns."""

    def __init__(self, workdir: Path, name: str, group: str, registry_url: str, **extra: str):
        self.name = name
        self.host: Host | None = None
        self.port = free_port()
        self.dir = workdir / name
        (self.dir / "conf").mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "conf" / "red5.properties"
        self.log = self.dir / "node.log"
        lines = {
            "nodeGroup": group,
            "server.name": name,
            "http.host": "127.0.0.1",
            "http.port": str(self.port),
            "server.adminToken": ADMIN_TOKEN,
            "server.allowed_dashboard_CIDR": "127.0.0.0/8",
            "clusterdb.url": registry_url,
            "cluster.secret": CLUSTER_SECRET,
            "webrtc.candidateAddresses": "127.0.0.1",
            "webrtc.iceServers": "",
            "cluster.heartbeatIntervalMs": "500",
            "cluster.nodeDeadTimeoutMs": "2000",
            # A test that sends a client to a node means that node; routing tests turn it on.
            "server.routing": "off",
            **extra,
        }
        text = f"# node {name} for a test\n" + "".join(f"{k}={v}\n" for k, v in lines.items())
        self.config.write_text(text, encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None
        self._scheme = "https" if lines.get("server.tlsCertificate") else "http"
        ca = lines.get("server.tlsCA")
        self.verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
        self._terminated = False

    def on_host(self, host: Host) -> NodeProcess:
        """Run inside ``host`` (before it starts): listen and advertise ICE candidates on the
        host's address only, and make the test's requests to the node from that host."""
        self.host = host
        self.patch_config(**{"http.host": host.address, "webrtc.candidateAddresses": host.address})
        return self

    @property
    def address(self) -> str:
        return self.host.address if self.host is not None else "127.0.0.1"

    @property
    def url(self) -> str:
        return f"{self._scheme}://{self.address}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> NodeProcess:
        self.launch()
        return self.wait_healthy(timeout_s)

    def launch(self) -> None:
        """Start the process without waiting for it (``start_all`` starts many at once)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTREAM_")}
        argv = [sys.executable, "-m", "cluster", "node", "--config", str(self.config)]
        self._terminated = False
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.host.command(*argv) if self.host is not None else argv,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, timeout_s: float = 20.0) -> NodeProcess:
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node {self.name} exited at start:\n{self.log_text()}")
            try:
                if self.get("/healthz", timeout_s=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"node {self.name} not healthy in {timeout_s} s:\n{self.log_text()}")

    def terminate(self) -> None:
        """SIGTERM by PID, without waiting; only once (a second signal skips the node's drain)."""
        if self.process is not None and not self._terminated and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM by PID, wait; SIGKILL if it has not exited in time. Returns the exit code."""
        if self.process is None:
            return 0
        self.terminate()
        process, self.process = self.process, None
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            raise TimeoutError(f"node {self.name} ignored SIGTERM:\n{self.log_text()}") from None

    def kill(self) -> None:
        """SIGKILL by PID: a crash, as far as the cluster can tell."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP by PID: the node is still listed, its sockets still accept, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT by PID: the node wakes and finds the cluster moved on."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited (a frozen one is running)."""
        return self.process is not None and self.process.poll() is None

    def thaw_if_running(self) -> None:
        """SIGCONT if the process runs: harmless on a node that is not frozen."""
        if self.running:
            self.thaw()

    def patch_config(self, **changes: str) -> None:
        """Change keys of the node's properties file (before it starts)."""
        lines = [
            line
            for line in self.config.read_text(encoding="utf-8").splitlines()
            if line.split("=", 1)[0] not in changes
        ]
        lines += [f"{key}={value}" for key, value in changes.items()]
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def _from_host(self, request: Callable[[], T]) -> T:
        """Make ``request`` where the node can be reached: its host, or here on 127.0.0.1."""
        return self.host.call(request) if self.host is not None else request()

    def get(
        self, path: str, headers: dict[str, str] | None = None, timeout_s: float = 5.0
    ) -> httpx.Response:
        return self._from_host(
            lambda: httpx.get(
                self.url + path, headers=headers, timeout=timeout_s, verify=self.verify
            )
        )

    def post(self, path: str, body: Any = None, token: str | None = ADMIN_TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self._from_host(
            lambda: httpx.post(
                self.url + path, json=body, headers=headers, timeout=5.0, verify=self.verify
            )
        )


def start_all(nodes: list[NodeProcess], timeout_s: float = 30.0) -> None:
    """Launch every node, then wait for each: start-up costs overlap."""
    for node in nodes:
        node.launch()
    for node in nodes:
        node.wait_healthy(timeout_s)


@contextlib.contextmanager
def running(nodes: list[NodeProcess], timeout_s: float = 60.0) -> Iterator[list[NodeProcess]]:
    """``start_all``, then stop every node by its PID when the block ends, however it ends."""
    try:
        start_all(nodes, timeout_s)
        yield nodes
    finally:
        for node in nodes:
            node.terminate()  # their drains overlap
        stuck: list[TimeoutError] = []
        for node in nodes:
            try:
                node.stop()
            except TimeoutError as error:
                stuck.append(error)
        if stuck:
            raise stuck[0]
