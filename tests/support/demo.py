"""A real ``tierstream demo`` process for tests: started on free consecutive ports, stopped by PID.

The demo writes ``demo.json`` in its workdir (nodes, ports, PIDs); tests read
it to reach the nodes and to check afterwards that every process is gone.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from tests.support import REPO
from tests.support.processes import stop_process

READY_LINE = "players receiving"


def free_consecutive_ports(count: int, first: int = 20000, last: int = 60000) -> int:
    """The first of ``count`` consecutive ports on 127.0.0.1 that nothing listens on."""
    for base in range(first, last, count):
        taken = False
        for port in range(base, base + count):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    taken = True
                    break
        if not taken:
            return base
    raise RuntimeError(f"no {count} consecutive free ports in {first}..{last}")


def cli(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``tierstream <args>`` to completion (bounded) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "cluster", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


class DemoProcess:
    """``tierstream demo`` with small defaults for tests (two regions of two nodes)."""

    def __init__(self, workdir: Path, *options: str, regions: str = "eu,us", per_region: int = 2):
        self.workdir = workdir
        self.count = len(regions.split(",")) * per_region
        self.port = free_consecutive_ports(self.count)
        self.output = workdir / "demo.out"
        self.args = [
            "demo",
            "--regions",
            regions,
            "--nodes-per-region",
            str(per_region),
            "--players-per-node",
            "1",
            "--port",
            str(self.port),
            "--workdir",
            str(workdir),
            *options,
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []

    def start(self, timeout_s: float = 90.0) -> DemoProcess:
        """Start, wait until its players receive (the demo says so); fail with its output."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cluster", *self.args],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the demo exited with {self.process.returncode}:\n{self.text()}"
                )
            if READY_LINE in self.text() and "dashboard:" in self.text():
                self.pids = [n["pid"] for n in self.state()["nodes"]]
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"the demo was not up in {timeout_s} s:\n{self.text()}")

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.workdir / "demo.json").read_text("utf-8"))
        return state

    def node_url(self, name: str) -> str:
        return str(next(n["url"] for n in self.state()["nodes"] if n["name"] == name))

    def text(self) -> str:
        return self.output.read_text("utf-8", errors="replace") if self.output.exists() else ""

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout_s)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGINT by PID (Ctrl-C), a bounded wait, SIGKILL after it; returns the exit status."""
        process, self.process = self.process, None
        if process is None:
            return 0
        if not stop_process(process, signal.SIGINT, timeout_s):
            raise subprocess.TimeoutExpired(process.args, timeout_s)
        return process.returncode

    def leftovers(self) -> list[int]:
        """Node PIDs of this demo still alive: not zombies, and still running its configs."""
        alive = []
        for pid in self.pids:
            try:
                process = psutil.Process(pid)
                if process.status() != psutil.STATUS_ZOMBIE and str(self.workdir) in " ".join(
                    process.cmdline()
                ):
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        return alive
